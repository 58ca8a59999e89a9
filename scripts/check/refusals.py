"""Refusals of schema-valid requests in a schemathesis HAR (`scripts/check/contract.sh`).

schemathesis's `positive_data_acceptance` check has to allow 400 on the operations whose bodies
carry rules between fields (schemathesis.toml), which would also hide a single-field bound the
document forgets. This check reads every request the server answered with 400 or 422, validates its
path, query, header and JSON body parameters against the served document (JSON Schema 2020-12, with
the int32/int64 ranges), and fails on each schema-valid one whose refusal is not a rule listed in
ALLOWED below: a rule between fields, between the path and the body, or on state or the network,
which no schema states.

    python3 scripts/check/refusals.py openapi.json har.json
"""

import collections
import json
import re
import sys
import urllib.parse

from jsonschema import Draft202012Validator, FormatChecker, ValidationError, validators as _validators
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012


def _ecma(pattern):
    """`pattern` for Python's `re` as ECMA-262 reads it: an unescaped `$` ends the string, where
    Python's also matches before a final newline (so `"0x8\\n"` would pass `^[0-9a-z]+$`)."""
    return re.sub(r"(?<!\\)\$", r"\\Z", pattern)


def _pattern(validator, pattern, instance, schema):
    if validator.is_type(instance, "string") and not re.search(_ecma(pattern), instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


# The 2020-12 validator with `pattern` read the ECMA way, as the document's readers (and the
# server's checks) read it.
Validator = _validators.extend(Draft202012Validator, {"pattern": _pattern})

# (operation or "*", status, detail pattern): why a schema-valid request may still be refused.
ALLOWED = [
    # Between fields of a campaign (model.rs `check`): the end after the start, at most 366 days
    # long, in the future, a rank campaign inside one leaderboard period, tiers in order and apart.
    *[
        (op, 400, pattern)
        for op in ("POST /campaigns", "PATCH /campaigns/{id}")
        for pattern in (
            r"must be after startsAt",
            r"a campaign lasts at most 366 days",
            r"must be in the future",
            r"rank campaign must end within the period it starts in",
            r"ranks must satisfy 1 <= fromRank <= toRank",
            r"tiers must not overlap",
        )
    ],
    # The expiry relative to the server's clock.
    ("POST /inbox/messages", 400, r"must be in the future, within a year"),
    # The URL's host is looked up when the webhook is created: no answer, or a private address.
    ("POST /webhooks", 400, r"cannot resolve|resolves to"),
    # The URL's host and port as the URL standard parses them (IDNA mapping of a Unicode name, an
    # IP literal's form, a port up to 65535, a non-empty host), which the pattern states only in
    # part and `format: uri` names but this checker's `jsonschema` does not test.
    ("POST /webhooks", 400, r"not a URL: (invalid (international domain name|port number|"
     r"IPv4 address|IPv6 address|domain character)|empty host)"),
    # An email's length in lower case, as stored (a few letters lengthen: `İ` is two).
    ("POST /operators", 400, r"at most 254 characters in lower case"),
    # The URL as stored, percent-encoded by the URL standard, within the same 2048 characters.
    ("POST /webhooks", 400, r"once percent-encoded"),
    # The body names the campaign or message of the path (it is signed; the path is not).
    ("POST /campaigns/{id}/entries", 422, r"must be the campaign of the path"),
    ("POST /players/{id}/inbox/{messageId}/claim", 422, r"must be the (player|message) of the path"),
    # The same Idempotency-Key sent before with another body (the IETF draft's 422), on any route.
    ("*", 422, r"Idempotency-Key was already used"),
]

RANGES = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}


def main(doc_path, har_path):
    # Every `#/components/...` reference made absolute once, so any part of the document is a
    # schema the registry resolves on its own.
    text = open(doc_path, encoding="utf-8").read()
    doc = json.loads(text.replace('"#/components', '"urn:doc#/components'))
    har = json.load(open(har_path, encoding="utf-8"))
    registry = Registry().with_resource(
        "urn:doc", Resource.from_contents(doc, default_specification=DRAFT202012)
    )
    schemas = doc.get("components", {}).get("schemas", {})
    formats = FormatChecker()

    def in_format(schema, value):
        """Whether the integers in `value` fit the int32/int64 formats `schema` gives them."""
        if not isinstance(schema, dict):
            return True
        if "$ref" in schema:
            return in_format(schemas[schema["$ref"].rsplit("/", 1)[-1]], value)
        bounds = RANGES.get(schema.get("format"))
        if bounds and isinstance(value, int) and not isinstance(value, bool):
            if not bounds[0] <= value <= bounds[1]:
                return False
        if isinstance(value, dict):
            props = schema.get("properties", {})
            if not all(in_format(props[k], v) for k, v in value.items() if k in props):
                return False
        if isinstance(value, list) and "items" in schema:
            if not all(in_format(schema["items"], v) for v in value):
                return False
        for key in ("oneOf", "anyOf", "allOf"):
            if key in schema and not any(in_format(s, value) for s in schema[key]):
                return False
        return True

    validators = {}  # by the id of a schema of `doc`, which lives as long as this call

    def valid(schema, value):
        if not in_format(schema, value):
            return False
        validator = validators.get(id(schema))
        if validator is None:
            validator = Validator(schema, registry=registry, format_checker=formats)
            validators[id(schema)] = validator
        return validator.is_valid(value)

    def typed(schema, text):
        kinds = schema.get("type")
        kinds = kinds if isinstance(kinds, list) else [kinds]
        if "integer" in kinds and re.fullmatch(r"-?[0-9]+", text):
            return int(text)
        return text

    def schema_valid(op, names, values, url, headers, body_text):
        params = op.get("parameters", [])
        for name, value in zip(names, values):
            p = next((p for p in params if p["in"] == "path" and p["name"] == name), None)
            if p and not valid(p["schema"], urllib.parse.unquote(value)):
                return False
        pairs = urllib.parse.parse_qsl(url.query, keep_blank_values=True)
        query = dict(pairs)
        if len(query) != len(pairs):
            return False  # a repeated key
        known = set()
        for p in (p for p in params if p["in"] == "query"):
            schema = p["schema"]
            variants = schema.get("oneOf")
            if variants and all(v.get("type") == "object" for v in variants):
                # An object parameter spread over its properties' keys (style form, explode).
                props = {k for v in variants for k in v.get("properties", {})}
                known |= props
                given = {k: query[k] for k in props if k in query}
                if given and not valid(schema, given):
                    return False
                continue
            known.add(p["name"])
            if p["name"] in query:
                if not valid(schema, typed(schema, query[p["name"]])):
                    return False
            elif p.get("required"):
                return False
        if set(query) - known:
            return False  # schemathesis adds unknown keys for the server to refuse
        for p in (p for p in params if p["in"] == "header"):
            value = headers.get(p["name"].lower())
            if value == "[Filtered]":
                return False  # schemathesis hides headers named like secrets: cannot judge
            if value is None:
                if p.get("required"):
                    return False
            elif not valid(p["schema"], typed(p["schema"], value)):
                return False
        body = op.get("requestBody", {}).get("content", {}).get("application/json")
        if body:
            try:
                value = json.loads(body_text or "")
            except ValueError:
                return False
            return valid(body["schema"], value)
        return True

    operations = []
    for path, item in doc["paths"].items():
        rx = re.compile("^" + re.sub(r"\{[^}]+\}", "([^/]+)", path) + "$")
        names = re.findall(r"\{([^}]+)\}", path)
        for method, op in item.items():
            if method in ("get", "post", "put", "patch", "delete"):
                operations.append((f"{method.upper()} {path}", method.upper(), rx, names, op))

    checked = 0
    unexplained = collections.Counter()
    for entry in har["log"]["entries"]:
        status = entry["response"]["status"]
        if status not in (400, 422):
            continue
        request = entry["request"]
        url = urllib.parse.urlsplit(request["url"])
        headers = {h["name"].lower(): h["value"] for h in request.get("headers", [])}
        for name, method, rx, names, op in operations:
            m = rx.match(url.path)
            if request["method"] != method or not m:
                continue
            body_text = (request.get("postData") or {}).get("text")
            if not schema_valid(op, names, m.groups(), url, headers, body_text):
                break
            checked += 1
            try:
                detail = json.loads(entry["response"]["content"].get("text") or "{}").get("detail")
            except ValueError:
                detail = None
            detail = detail or ""
            if not any(
                o in (name, "*") and s == status and re.search(p, detail) for o, s, p in ALLOWED
            ):
                unexplained[(name, status, detail[:160])] += 1
            break

    for (name, status, detail), n in sorted(unexplained.items()):
        print(f"refusals: {n} schema-valid request(s) to {name} got {status}: {detail}")
    print(
        f"refusals: {checked} schema-valid request(s) refused with 400/422, "
        f"{sum(unexplained.values())} for a reason the document could state"
    )
    return 1 if unexplained else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
