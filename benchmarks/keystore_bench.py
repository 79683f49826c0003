"""How much the front door's key check costs per request, in the same run: the key store's change check
(``KeyStore._signature``) as it is now against how it was (open, fstat, seek, read, close on every call), under the
old access check (``enabled()`` then ``role_of(key)``: two store looks a request) and the front door's own
``auth.denied`` (one look for a valid key).

Run as: .venv/bin/python benchmarks/keystore_bench.py [--requests 20000]
Prints one JSON line: microseconds per request of each.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from starlette.requests import Request

from lorastack.access import Role
from lorastack.serve.front_door.auth import denied
from lorastack.serve.keys import KeyStore


class ReopeningKeyStore(KeyStore):
    """The baseline: the change check as it was before (the file opened and closed on every request)."""

    def _signature(self) -> tuple:
        try:
            with open(self.db_path, "rb", buffering=0) as fh:
                stat = os.fstat(fh.fileno())
                fh.seek(24)
                counter = fh.read(4)
        except FileNotFoundError:
            return ()
        return (stat.st_ino, stat.st_size, stat.st_mtime_ns, counter)


def _old_check_us(store: KeyStore, key: str, requests: int) -> float:
    started = time.perf_counter()
    for _ in range(requests):
        store.enabled()
        store.role_of(key)
    return 1e6 * (time.perf_counter() - started) / requests


def _denied_us(store: KeyStore, key: str, requests: int) -> float:
    scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions", "client": ("127.0.0.1", 1),
             "headers": [(b"authorization", f"Bearer {key}".encode())]}  # fmt: skip
    request = Request(scope)
    started = time.perf_counter()
    for _ in range(requests):
        assert denied(store, request, Role.inference) is None
    return 1e6 * (time.perf_counter() - started) / requests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="lorastack-keystore-bench-"))
    _, key = KeyStore(home).create(Role.inference, "bench")
    KeyStore(home).create(Role.admin, "bench")
    variants = {
        "before: reopened file, enabled+role_of": (ReopeningKeyStore(home), _old_check_us),
        "kept-open file, enabled+role_of": (KeyStore(home), _old_check_us),
        "now: kept-open file, auth.denied": (KeyStore(home), _denied_us),
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.rounds):  # interleaved, so all see the same machine
        for name, (store, measure) in variants.items():
            times[name].append(measure(store, key, args.requests))
    result = {name: round(statistics.median(t), 2) for name, t in times.items()}
    before, now = result["before: reopened file, enabled+role_of"], result["now: kept-open file, auth.denied"]
    print(json.dumps({"us_per_request": result, "before_over_now": round(before / now, 2), "requests": args.requests,
                      "rounds": args.rounds}))  # fmt: skip


if __name__ == "__main__":
    main()
