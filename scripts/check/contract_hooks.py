"""Schemathesis hooks for `scripts/check/contract.sh`: sign requests the way a game client does.

For the signed routes, the body is serialized once, `X-Timestamp` is set to now and
`X-Signature` to `v2=<hex HMAC-SHA256(secret, "v2\\n<ts>\\n<METHOD>\\n<path>\\n<body>")>` over exactly
those bytes and the path as requests sends it (the formatted path, re-quoted as requests does), which
are then sent as they are. A request whose generated headers leave one of the two out (a
"missing required header" case) is left unsigned, so the server must refuse it. An event's `ts`
that is an integer is set to now, as a client stamps its events: the server accepts only
timestamps within 24 h before and 5 min after its own clock, which no static schema can say.

Operator routes (those whose operation lists the `bearer` security scheme in the served OpenAPI)
get `Authorization: Bearer <token>` of the bootstrap admin (`LIVEOPS_CONTRACT_ADMIN_EMAIL` and
`..._PASSWORD`) from an auth provider, logged in once; `POST /auth/logout` gets a token of its
own each time, so the shared one is never revoked. A generated `PATCH /operators/{id}` aimed at
the bootstrap admin (found by following links from `GET /operators`) is pointed at an id that
does not exist instead: disabling or demoting the account every later case signs in with would
turn the rest of the run into 401s and 403s. A claim's `playerId` is set to the path's player, as a client sends
it (a body naming another player is refused by design, which the schema cannot say); likewise an
entry's or claim's optional `campaignId` / `messageId`, when it is a well-formed id.

Times a client takes from its clock are set the same way, when the generated value is a
well-formed RFC 3339 instant (so a case meant to be refused for its format stays refused): a
campaign's `startsAt` and `endsAt` to a minute and ten minutes from now, an inbox message's
`expiresAt` to a day from now. Without this, nearly every generated campaign ends before it starts,
so schemathesis never gets a campaign id to follow into its schedule, cancel, draw and entry
operations. Likewise a webhook's URL whose host is a plain name is pointed at a loopback sink
(`LIVEOPS_CONTRACT_SINK`), the one kind of host that resolves here. And a board's `period`
(`GET /leaderboard`, `GET /leaderboard/history`) that is a well-formed id of its window is set to
one that window has archived, as a client picks one from `GET /leaderboard/history/periods`
(contract.sh sends the sample events and waits for a snapshot first); a random date almost never
has a snapshot, so the archived boards' responses would otherwise go unchecked.

No query parameter is an array, so a generated query value that is empty (`[]`, `{}`, None) only
comes from a case meant to be refused, typically an extra property of the exploded `board` object;
the HTTP client would drop it and send a valid request. It is sent as `name=` instead, so the
server sees what the case means to test (a `board` with a property it does not have).
"""

import hashlib
import hmac
import json
import os
import random
import re
import time
import urllib.parse
import urllib.request
from datetime import datetime, timedelta, timezone

from requests.utils import requote_uri

import schemathesis

SECRET = os.environ["LIVEOPS_CONTRACT_SECRET"].encode()
SIGNED = {
    ("POST", "/events"),
    ("POST", "/events/batch"),
    ("POST", "/rewards/claim"),
    ("POST", "/campaigns/{id}/entries"),
    ("POST", "/players/{id}/inbox/{messageId}/claim"),
}
BASE = os.environ.get("LIVEOPS_CONTRACT_BASE", "")
ADMIN = (
    os.environ.get("LIVEOPS_CONTRACT_ADMIN_EMAIL", ""),
    os.environ.get("LIVEOPS_CONTRACT_ADMIN_PASSWORD", ""),
)
_bearer_ops = None


def _an_address():
    """A client address of its own for one login (contract.sh trusts one proxy's entry)."""
    return "10.%d.%d.%d" % tuple(random.randrange(256) for _ in range(3))


def _http(method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(BASE + path, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    if path == "/auth/login":
        req.add_header("X-Forwarded-For", _an_address())
    with urllib.request.urlopen(req, timeout=60) as resp:
        return json.loads(resp.read())


def _bearer_operations():
    """(METHOD, path) of every operation the served OpenAPI says needs a bearer token."""
    global _bearer_ops
    if _bearer_ops is None:
        spec = _http("GET", "/openapi.json")
        _bearer_ops = set()
        for path, item in spec.get("paths", {}).items():
            for method, op in item.items():
                if isinstance(op, dict) and any("bearer" in s for s in op.get("security", [])):
                    _bearer_ops.add((method.upper(), path))
    return _bearer_ops


_admin_id = None


def _bootstrap_admin_id(token):
    """The bootstrap admin's operator id, looked up once."""
    global _admin_id
    if _admin_id is None:
        req = urllib.request.Request(BASE + "/auth/me", method="GET")
        req.add_header("Authorization", "Bearer " + token)
        with urllib.request.urlopen(req, timeout=60) as resp:
            me = json.loads(resp.read())
        _admin_id = str(me["id"])
    return _admin_id


def _login():
    return _http("POST", "/auth/login", {"email": ADMIN[0], "password": ADMIN[1]})["token"]


def _stamp(event, now):
    if not isinstance(event, dict):
        return
    ts = event.get("ts")
    whole = isinstance(ts, int) or (isinstance(ts, float) and ts.is_integer())
    if whole and not isinstance(ts, bool):
        event["ts"] = now


ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
# (METHOD, path) → {field: seconds from now} for instants a client sets from its clock.
CLOCK = {
    ("POST", "/campaigns"): {"startsAt": 60, "endsAt": 600},
    ("PATCH", "/campaigns/{id}"): {"startsAt": 60, "endsAt": 600},
    ("POST", "/inbox/messages"): {"expiresAt": 86400},
}
# A webhook a client registers points at a host of its own that resolves; here the one that does
# is loopback (contract.sh runs the server with WEBHOOK_ALLOW_PRIVATE), where a sink answers 204.
# Only a generated URL whose host is a plain DNS name is pointed there, keeping its scheme, path and
# query: hosts the URL standard refuses (bad IDNA, IP literals, ports) are still sent as generated.
SINK = os.environ.get("LIVEOPS_CONTRACT_SINK", "")
NAMED_HOST = re.compile(
    r"^([Hh][Tt][Tt][Pp][Ss]?://)[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.?(:[0-9]{1,5})?([/?#].*)?$", re.S
)
# (METHOD, path) → {body field: path parameter} for ids a client copies from the path.
FROM_PATH = {
    ("POST", "/campaigns/{id}/entries"): {"campaignId": "id"},
    ("POST", "/players/{id}/inbox/{messageId}/claim"): {"playerId": "id", "messageId": "messageId"},
}


# Operations whose `board` query names an archived period.
BOARDS = {("GET", "/leaderboard"), ("GET", "/leaderboard/history")}
_period_patterns = None


def _period_pattern(window):
    """The served document's period pattern for `window` (None: the default window's)."""
    global _period_patterns
    if _period_patterns is None:
        _period_patterns = {}
        spec = _http("GET", "/openapi.json")
        for param in spec["paths"]["/leaderboard/history"]["get"].get("parameters", []):
            for shape in param.get("schema", {}).get("oneOf", []):
                props = shape.get("properties", {})
                name = props.get("window", {}).get("enum", [None])[0]
                if "pattern" in props.get("period", {}):
                    _period_patterns[name] = re.compile(props["period"]["pattern"])
    return _period_patterns.get(window)


def _archived_period(query):
    """The newest archived period of the query's window, when its `period` is well-formed."""
    window, period = query.get("window"), query.get("period")
    if not isinstance(period, str) or not (window is None or isinstance(window, str)):
        return None
    pattern = _period_pattern(window)
    if pattern is None or not pattern.search(period):
        return None
    path = "/leaderboard/history/periods" + ("" if window is None else "?window=" + window)
    periods = _http("GET", path).get("periods", [])
    return periods[0] if periods else None


def _instant(seconds):
    at = datetime.now(timezone.utc) + timedelta(seconds=seconds)
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def _vanishes(value):
    """Whether a query value puts nothing on the wire (None, or containers of nothing)."""
    if value is None:
        return True
    if isinstance(value, (list, tuple)):
        return all(_vanishes(v) for v in value)
    if isinstance(value, dict):
        return all(_vanishes(v) for v in value.values())
    return False


def _on_the_wire(query):
    """The query with every value that would vanish sent as an empty one (`name=`).

    >>> _on_the_wire({"period": "2026-12-03", "x": [], "y": {}, "z": None, "w": [[], 1]})
    {'period': '2026-12-03', 'x': '', 'y': '', 'z': '', 'w': [[], 1]}
    """
    return {name: "" if _vanishes(value) else value for name, value in query.items()}


def _like_a_client(case, body):
    """Sets the clock-taken instants, path-copied ids and archived periods as a client would."""
    key = (case.method.upper(), case.path)
    if isinstance(case.query, dict):
        case.query = _on_the_wire(case.query)
    if key in BOARDS and BASE and isinstance(case.query, dict):
        archived = _archived_period(case.query)
        if archived is not None:
            case.query = {**case.query, "period": archived}
    if not isinstance(body, dict):
        return
    for field, seconds in CLOCK.get(key, {}).items():
        if isinstance(body.get(field), str) and RFC3339.match(body[field]):
            body[field] = _instant(seconds)
    url = body.get("url")
    if key == ("POST", "/webhooks") and SINK and isinstance(url, str):
        named = NAMED_HOST.match(url)
        if named:
            body["url"] = named.group(1) + SINK + (named.group(4) or "")
    for field, param in FROM_PATH.get(key, {}).items():
        value = (case.path_parameters or {}).get(param)
        if isinstance(body.get(field), str) and ID.match(body[field]) and isinstance(value, str):
            body[field] = value


@schemathesis.auth()
class OperatorBearer:
    """The bootstrap admin's bearer token on the operations that declare the `bearer` scheme.

    Given through schemathesis's auth provider, so its auth checks know the credentials are
    explicit and probe the server without them and with invalid ones.
    """

    def get(self, case, ctx):
        return _login() if BASE else None

    def set(self, case, data, ctx):
        if data is None or (case.method.upper(), case.path) not in _bearer_operations():
            return
        # Logging out revokes the token: that call gets a session of its own.
        token = _login() if case.path == "/auth/logout" else data
        if case.path == "/operators/{id}" and case.path_parameters:
            if str(case.path_parameters.get("id")) == _bootstrap_admin_id(data):
                case.path_parameters = {**case.path_parameters, "id": "00000000-0000-7000-8000-000000000000"}
        headers = dict(case.headers or {})
        headers["Authorization"] = "Bearer " + token
        case.headers = headers


@schemathesis.hook
def before_call(ctx, case, kwargs):
    _like_a_client(case, case.body)
    if case.path == "/auth/login":
        case.headers = {**(case.headers or {}), "X-Forwarded-For": _an_address()}
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
    path = urllib.parse.urlsplit(requote_uri(case.formatted_path)).path
    text = f"v2\n{ts}\n{case.method.upper()}\n{path}\n".encode() + raw
    sig = hmac.new(SECRET, text, hashlib.sha256).hexdigest()
    kept = {k: v for k, v in headers.items() if k.lower() not in ("x-timestamp", "x-signature", "x-key-id")}
    kept["X-Timestamp"] = ts
    kept["X-Signature"] = "v2=" + sig
    case.headers = kept
    kwargs["data"] = raw
