#!/usr/bin/env python3
"""Turns IAM checks on in a moto server of its own (scripts/services-cloud.sh starts it beside the
shared one, whose tests run unchecked) and prints, as env lines, the static keys of two IAM users
made on it: one allowed every action, one allowed every SQS action but sqs:SetQueueAttributes (a
role that lacks it, as a deployment's may). The liveops-sqs tests of a refused queue update use
them. moto checks every request after the switch: signature, then the user's policies.

    moto-iam.py http://127.0.0.1:15001
"""

import json
import sys
import urllib.request
import uuid

import boto3


def reset_auth(endpoint, count):
    """Requests moto serves before it checks them: "inf" never, "0" from now on."""
    request = urllib.request.Request(
        f"{endpoint}/moto-api/reset-auth",
        data=count.encode(),
        # Not a form: moto reads the raw body, which Flask empties for form posts.
        headers={"Content-Type": "text/plain"},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        answer.read()


def user(iam, name, statements):
    iam.create_user(UserName=name)
    policy = {"Version": "2012-10-17", "Statement": statements}
    iam.put_user_policy(UserName=name, PolicyName="liveops-test", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return f"{key['AccessKeyId']}:{key['SecretAccessKey']}"


def main(endpoint):
    # Unchecked while the users are made (also when the server already checks: a second start).
    reset_auth(endpoint, "inf")
    iam = boto3.client(
        "iam",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    suffix = uuid.uuid4().hex[:8]
    admin = user(iam, f"admin-{suffix}", [{"Effect": "Allow", "Action": "*", "Resource": "*"}])
    no_set = user(
        iam,
        f"bus-{suffix}",
        [
            {"Effect": "Allow", "Action": "sqs:*", "Resource": "*"},
            {"Effect": "Deny", "Action": "sqs:SetQueueAttributes", "Resource": "*"},
        ],
    )
    reset_auth(endpoint, "0")
    print(f"export LIVEOPS_TEST_SQS_IAM_ENDPOINT={endpoint}")
    print(f"export LIVEOPS_TEST_SQS_IAM_ADMIN_KEY={admin}")
    print(f"export LIVEOPS_TEST_SQS_IAM_NO_SET_KEY={no_set}")


if __name__ == "__main__":
    main(sys.argv[1])
