#!/usr/bin/env python3
"""An independent re-implementation of the draw `liveops-draw-v1`
(docs/adr/0014-provably-fair-draw.md), written from the specification with the Python standard
library only, so the Rust code can be checked against it (crates/core/tests/draw_reference.rs,
crates/server/tests/campaigns.rs).

Reads a JSON object on stdin:
    {"seed": "<64 hex digits>", "entrants": ["player ids", ...], "winners": <count>}
(entrants in any order, repeats allowed) and prints:
    {"commitment": ..., "entrants": [...], "entrantsHash": ..., "winners": [...]}
A JSON array of such objects gives an array of answers, in order.
"""
import hashlib
import hmac
import json
import sys


def run(seed_hex, raw_entrants, count):
    seed = bytes.fromhex(seed_hex)
    assert len(seed) == 32, "the seed is 32 bytes"
    # Distinct ids, sorted by their UTF-8 bytes.
    entrants = sorted(set(raw_entrants), key=lambda s: s.encode("utf-8"))
    entrants_hash = hashlib.sha256("\n".join(entrants).encode("utf-8")).hexdigest()
    remaining = list(entrants)
    winners = []
    k = 0
    while len(winners) < count and remaining:
        message = (entrants_hash + ":" + str(k)).encode("ascii")
        x = int.from_bytes(hmac.new(seed, message, hashlib.sha256).digest()[:8], "big")
        k += 1
        n = len(remaining)
        if x < 2**64 - (2**64 % n):
            winners.append(remaining.pop(x % n))
    return {
        "commitment": hashlib.sha256(seed).hexdigest(),
        "entrants": entrants,
        "entrantsHash": entrants_hash,
        "winners": winners,
    }


if __name__ == "__main__":
    request = json.load(sys.stdin)
    answer = lambda r: run(r["seed"], r["entrants"], int(r["winners"]))
    json.dump([answer(r) for r in request] if isinstance(request, list) else answer(request), sys.stdout)
    sys.stdout.write("\n")
