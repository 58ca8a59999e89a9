"""Schemathesis hooks for `scripts/check/contract.sh`: sign requests the way a game client does.

For the signed routes, the body is serialized once, `X-Timestamp` is set to now and
`X-Signature` to `sha256=<hex HMAC-SHA256(secret, "<ts>.<body>")>` over exactly those bytes, which
are then sent as they are. A request whose generated headers leave one of the two out (a
"missing required header" case) is left unsigned, so the server must refuse it. An event's `ts`
that is an integer is set to now, as a client stamps its events: the server accepts only
timestamps within 24 h before and 5 min after its own clock, which no static schema can say.
"""

import hashlib
import hmac
import json
import os
import time

import schemathesis

SECRET = os.environ["LIVEOPS_CONTRACT_SECRET"].encode()
SIGNED = {
    ("POST", "/events"),
    ("POST", "/events/batch"),
    ("POST", "/rewards/claim"),
}


def _stamp(event, now):
    if not isinstance(event, dict):
        return
    ts = event.get("ts")
    whole = isinstance(ts, int) or (isinstance(ts, float) and ts.is_integer())
    if whole and not isinstance(ts, bool):
        event["ts"] = now


@schemathesis.hook
def before_call(ctx, case, kwargs):
    if (case.method.upper(), case.path) not in SIGNED:
        return
    headers = case.headers or {}
    names = {k.lower() for k in headers}
    if "x-timestamp" not in names or "x-signature" not in names:
        return
    body = case.body
    if not isinstance(body, (dict, list)):
        return
    now = int(time.time())
    if case.path == "/events":
        _stamp(body, now)
    elif case.path == "/events/batch":
        items = body.get("events") if isinstance(body, dict) else body
        if isinstance(items, list):
            for item in items:
                _stamp(item, now)
    raw = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
    ts = str(now)
    sig = hmac.new(SECRET, ts.encode() + b"." + raw, hashlib.sha256).hexdigest()
    kept = {k: v for k, v in headers.items() if k.lower() not in ("x-timestamp", "x-signature", "x-key-id")}
    kept["X-Timestamp"] = ts
    kept["X-Signature"] = "sha256=" + sig
    case.headers = kept
    kwargs["data"] = raw
