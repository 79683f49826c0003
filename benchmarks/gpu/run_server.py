"""`lorastack serve`, as the CLI runs it, with two measuring aids for the GPU serving benchmark.

Run as: python benchmarks/gpu/run_server.py [--unlimited-upstream] [--sample-profile OUT.json] -- SERVE-ARGS...

- ``--unlimited-upstream`` lifts httpx's default connection-pool limit (100 connections) of the front door's client
  to vLLM, without editing the front door: it measures what that one-line change would give at concurrency > 100.
- ``--sample-profile OUT.json`` samples every thread's Python stack 500 times a second (a poor man's py-spy, which
  the GPU machine lacks) and writes, at exit, the functions where the front door's thread spent its time: self
  (the innermost frame) and inclusive (anywhere on the stack), as shares of its samples.
"""

from __future__ import annotations

import argparse
import atexit
import collections
import json
import sys
import threading
import time
from pathlib import Path


def _lift_pool_limit() -> None:
    import httpx

    original = httpx.AsyncClient.__init__

    def init(self, *args, **kwargs):
        kwargs.setdefault("limits", httpx.Limits(max_connections=None, max_keepalive_connections=None))
        original(self, *args, **kwargs)

    httpx.AsyncClient.__init__ = init


def _sample(out: Path, interval: float = 0.002) -> None:
    me = threading.get_ident()
    self_time: collections.Counter = collections.Counter()
    inclusive: collections.Counter = collections.Counter()
    samples: collections.Counter = collections.Counter()
    stop = threading.Event()

    def where(frame) -> str:
        code = frame.f_code
        return f"{Path(code.co_filename).name}:{code.co_name}"

    def loop() -> None:
        while not stop.is_set():
            names = {t.ident: t.name for t in threading.enumerate()}
            for ident, frame in sys._current_frames().items():
                if ident == me or ident == threading.get_ident():
                    continue
                thread = names.get(ident, str(ident))
                if thread != "lorastack-front-door":
                    continue
                samples[thread] += 1
                self_time[where(frame)] += 1
                seen = set()
                while frame is not None:
                    name = where(frame)
                    if name not in seen:
                        inclusive[name] += 1
                        seen.add(name)
                    frame = frame.f_back
            time.sleep(interval)

    sampler = threading.Thread(target=loop, name="sampler", daemon=True)
    sampler.start()

    def dump() -> None:
        stop.set()
        total = max(1, samples["lorastack-front-door"])
        out.write_text(json.dumps({
            "samples": total,
            "self": [(k, round(v / total, 4)) for k, v in self_time.most_common(40)],
            "inclusive": [(k, round(v / total, 4)) for k, v in inclusive.most_common(60)],
        }, indent=1) + "\n")  # fmt: skip

    atexit.register(dump)


def main() -> None:
    argv = sys.argv[1:]
    split = argv.index("--") if "--" in argv else len(argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--unlimited-upstream", action="store_true")
    parser.add_argument("--sample-profile", type=Path)
    args = parser.parse_args(argv[:split])
    if args.unlimited_upstream:
        _lift_pool_limit()
    if args.sample_profile:
        _sample(args.sample_profile)
    from lorastack.cli import main as lorastack_main

    sys.argv = ["lorastack", "serve", *argv[split + 1 :]]
    try:
        lorastack_main()
    except SystemExit as exc:
        if exc.code not in (0, None):
            raise


if __name__ == "__main__":
    main()
