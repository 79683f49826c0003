"""`lorastack serve` as a user runs it: start, ask, register + load from the CLI, Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port

pytestmark = pytest.mark.vllm


def _cli(home: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, LORASTACK_HOME=str(home))
    return subprocess.run(
        [sys.executable, "-m", "lorastack.cli", *args], capture_output=True, text=True, timeout=300, env=env, input=stdin
    )


def test_serve_ask_load_and_ctrl_c(tmp_path: Path, make_adapter) -> None:
    home, port = tmp_path / "home", free_port()
    env = dict(os.environ, LORASTACK_HOME=str(home), COLUMNS="200")
    serve = subprocess.Popen(
        [sys.executable, "-m", "lorastack.cli", "serve", "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )  # fmt: skip
    try:
        banner = ""
        deadline = time.monotonic() + 600
        while "Serving" not in banner and time.monotonic() < deadline and serve.poll() is None:
            banner += serve.stdout.readline()
        assert f"http://127.0.0.1:{port}/v1" in banner, banner
        state = json.loads((home / "server.json").read_text())
        vllm_pid = state["engine_pid"]
        assert "tools-demo@v1 (the default alias)" in banner  # the bundled adapter, on the first start
        served = {m["id"] for m in httpx.get(f"http://127.0.0.1:{port}/v1/models").json()["data"]}
        assert {"default", "tools-demo"} <= served, served  # also by its own name (it was a 404)

        base = ("--model", "SmolLM2-135M-Instruct")
        answer = _cli(home, "ask", "What is the capital of France?", "--max-tokens", "16", *base)
        assert answer.returncode == 0, answer.stderr
        assert "Paris" in answer.stdout

        as_json = json.loads(_cli(home, "ask", "What is 17 * 23?", "--json").stdout)
        assert as_json["model"] == "default" and as_json["model_calls"] >= 1
        assert as_json["steps"][0]["tool"] == "calculator" and "391" in as_json["answer"]

        stats = _cli(home, "adapters", "stats")
        assert stats.returncode == 0 and "default" in stats.stdout and "v1" in stats.stdout, stats.stdout

        chat = _cli(home, "chat", "--max-steps", "2", stdin="Hello, my name is Ada.\n/reset\nHi\n/exit\n")
        assert chat.returncode == 0, chat.stderr
        assert "Chatting with default" in chat.stdout and "(forgotten)" in chat.stdout

        registered = _cli(home, "adapters", "register", "tuned", str(make_adapter()))
        assert "Registered tuned@v1" in registered.stdout, registered.stderr
        loaded = _cli(home, "adapters", "load", "tuned")
        assert "Loaded tuned@v1" in loaded.stdout, loaded.stderr
        listing = _cli(home, "adapters", "list")
        assert "tuned" in listing.stdout and "yes" in listing.stdout
        assert _cli(home, "ask", "Hi", "--adapter", "tuned", "--max-tokens", "4").returncode == 0

        serve.send_signal(signal.SIGINT)
        out, _ = serve.communicate(timeout=120)
    finally:
        if serve.poll() is None:
            serve.kill()
    assert serve.returncode == 0, out
    assert "Stopping" in out
    assert not (home / "server.json").exists()
    with pytest.raises(ProcessLookupError):
        os.killpg(vllm_pid, 0)  # the whole vLLM process group is gone
