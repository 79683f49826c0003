"""Which model ``ask`` / ``eval`` answer with, and what they say when the endpoint refuses the key, through the real
CLI against a real HTTP endpoint: a small FastAPI stand-in on 127.0.0.1 that lists its models as a lorastack front
door does (aliases owned by ``lorastack``) or as a plain vLLM does, and answers a missing key as the front door does
(401, code ``invalid_api_key``). The thing under test is the agent's handling, not the server.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from lorastack.agent.session import choose_model
from lorastack.errors import ServerError, Unauthorized
from tests.conftest import free_port

BASE = "SmolLM2-135M-Instruct"
VLLM_MODELS = [
    {"id": BASE, "object": "model", "owned_by": "vllm", "root": "/models/smollm2", "parent": None},
    {"id": "tools-demo@v1", "object": "model", "owned_by": "vllm", "root": "tools-demo@v1", "parent": BASE},
]
ALIASES = [
    {"id": "default", "object": "model", "owned_by": "lorastack", "root": "tools-demo@v1", "parent": BASE},
    {"id": "tools-demo", "object": "model", "owned_by": "lorastack", "root": "tools-demo@v1", "parent": BASE},
]
KEY_ENV = ("LORASTACK_API_KEY", "LORASTACK_ADMIN_KEY", "OPENAI_API_KEY")


@dataclass
class StandIn:
    """The endpoint's behaviour (set by a test before it calls) and what it received."""

    url: str = ""
    lorastack: bool = True
    key: str | None = None
    """The one key it accepts; None: open (no key yet)."""
    models: list[dict] = field(default_factory=lambda: VLLM_MODELS + ALIASES)
    asked: list[str] = field(default_factory=list)
    """The ``model`` of every chat request."""
    presented: list[str] = field(default_factory=list)
    """The Authorization header of every /v1 request."""

    def app(self) -> FastAPI:
        app = FastAPI()

        def refused(request: Request) -> Response | None:
            self.presented.append(request.headers.get("authorization", ""))
            if self.key is None or request.headers.get("authorization") == f"Bearer {self.key}":
                return None
            error = {"message": "Missing or invalid API key (Authorization: Bearer KEY).",
                     "type": "authentication_error", "param": None, "code": "invalid_api_key"}  # fmt: skip
            return JSONResponse({"error": error}, status_code=401)

        @app.get("/health")
        async def health() -> Response:  # the front door's answer; vLLM's own is an empty 200
            return JSONResponse({"status": "ok"}) if self.lorastack else Response(status_code=200)

        @app.get("/v1/models")
        async def models(request: Request) -> Response:
            return refused(request) or JSONResponse({"object": "list", "data": self.models})

        @app.post("/v1/chat/completions")
        async def chat(request: Request) -> Response:
            if refusal := refused(request):
                return refusal
            body = await request.json()
            self.asked.append(body["model"])
            message = {"role": "assistant", "content": "17 * 23 = 391."}
            return JSONResponse({
                "id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": body["model"],
                "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            })  # fmt: skip

        return app


@pytest.fixture(scope="module")
def _server() -> Iterator[StandIn]:
    stand_in = StandIn()
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(stand_in.app(), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started
    stand_in.url = f"http://127.0.0.1:{port}"
    yield stand_in
    server.should_exit = True
    thread.join(10)


@pytest.fixture
def endpoint(_server: StandIn, monkeypatch: pytest.MonkeyPatch) -> StandIn:
    """The stand-in as a lorastack server with no keys; each test sets it up as it needs. No key in the env."""
    _server.lorastack, _server.key, _server.models = True, None, VLLM_MODELS + ALIASES
    _server.asked.clear()
    _server.presented.clear()
    for name in KEY_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    return _server


def _lorastack(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lorastack.cli", *args], capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, **env},
    )  # fmt: skip


def one_line_error(done: subprocess.CompletedProcess) -> str:
    """The error line of a failed run: the last on stderr, no traceback, before it only the progress lines a run
    prints before it reaches the endpoint ("Asking ...", "Searching ...")."""
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    *before, last = [line for line in done.stderr.splitlines() if line.strip()]
    assert all(line.startswith(("Asking ", "Searching ")) for line in before), done.stderr
    return last


def _ask(endpoint: StandIn, *args: str, **env: str) -> subprocess.CompletedProcess:
    return _lorastack("ask", "What is 17 * 23?", "--base-url", f"{endpoint.url}/v1", "--no-steps", *args, **env)


# -- which model answers ----------------------------------------------------------------------------------


def test_a_lorastack_server_by_url_answers_with_its_default_alias(endpoint: StandIn) -> None:
    """Pins a fix: by URL, ask took the endpoint's first model, the bare base model (which answered 341), and
    dropped the server's default alias."""
    done = _ask(endpoint)

    assert done.returncode == 0, done.stderr
    assert f"Asking default (tools-demo@v1 on {BASE})" in done.stderr
    assert endpoint.asked == ["default"]
    assert done.stdout.strip() == "17 * 23 = 391."


def test_a_foreign_endpoint_answers_with_its_first_model_and_says_so(endpoint: StandIn) -> None:
    endpoint.lorastack, endpoint.models = False, VLLM_MODELS

    done = _ask(endpoint)

    assert done.returncode == 0, done.stderr
    assert f"Asking {BASE} (the endpoint's first model; pass --model to choose)" in done.stderr
    assert endpoint.asked == [BASE]


def test_a_named_model_is_asked_as_named(endpoint: StandIn) -> None:
    done = _ask(endpoint, "--model", "tools-demo")
    assert done.returncode == 0, done.stderr
    assert "Asking tools-demo\n" in done.stderr and endpoint.asked == ["tools-demo"]


def test_the_server_of_server_json_answers_with_its_default_alias(endpoint: StandIn, _isolated_home: Path) -> None:
    """Without --base-url, ask finds the running server through LORASTACK_HOME/server.json."""
    _write_server_json(_isolated_home, endpoint)

    done = _lorastack("ask", "What is 17 * 23?", "--no-steps")

    assert done.returncode == 0, done.stderr
    assert f"Asking default (tools-demo@v1 on {BASE})" in done.stderr and endpoint.asked == ["default"]


def test_eval_says_which_model_answers(endpoint: StandIn, tmp_path: Path) -> None:
    eval_file = tmp_path / "eval.jsonl"
    eval_file.write_text(json.dumps({"question": "What is 17 * 23?", "answer": 391}) + "\n")

    done = _lorastack("eval", str(eval_file), "--base-url", f"{endpoint.url}/v1")

    assert done.returncode == 0, done.stderr
    assert f"Asking default (tools-demo@v1 on {BASE})" in done.stderr and endpoint.asked == ["default"]
    assert "100.0%" in done.stdout


@pytest.mark.parametrize(
    ("models", "base", "expected"),
    [
        (VLLM_MODELS + ALIASES, None, ("default", f"tools-demo@v1 on {BASE}", True)),
        (VLLM_MODELS + ALIASES[1:], None, (BASE, "the base model: the server has no default alias; pass --model to choose", True)),
        (VLLM_MODELS, BASE, (BASE, "the base model: the server has no default alias; pass --model to choose", True)),
        (VLLM_MODELS[::-1], None, ("tools-demo@v1", "the endpoint's first model; pass --model to choose", False)),
        # An entry named "default" that lorastack does not own is just a model of a foreign endpoint.
        ([{"id": "gpt-x", "owned_by": "org"}, {"id": "default", "owned_by": "org"}], None,
         ("gpt-x", "the endpoint's first model; pass --model to choose", False)),
    ],
)  # fmt: skip
def test_choose_model(models: list[dict], base: str | None, expected: tuple) -> None:
    assert choose_model(models, "http://x/v1", base) == expected


def test_an_endpoint_without_models_says_to_name_one() -> None:
    with pytest.raises(ServerError, match="serves no models.*Pass --model NAME"):
        choose_model([], "http://x/v1")


# -- a refused key ----------------------------------------------------------------------------------------


def test_a_lorastack_server_with_keys_and_none_given_is_one_line_naming_the_keys(endpoint: StandIn) -> None:
    """Pins a fix: after `lorastack keys create`, ask without LORASTACK_API_KEY fell back to the base model and then
    died in an 80-line traceback ending in a 401."""
    endpoint.key = "sk-inference"

    line = one_line_error(_ask(endpoint))

    assert "refused the API key (HTTP 401)" in line
    assert "LORASTACK_API_KEY" in line and "LORASTACK_ADMIN_KEY" in line
    assert "lorastack keys create --role inference" in line
    assert endpoint.asked == []  # no fallback to another model


def test_the_lorastack_key_from_the_environment_is_presented(endpoint: StandIn) -> None:
    endpoint.key = "sk-inference"
    done = _ask(endpoint, LORASTACK_API_KEY="sk-inference", OPENAI_API_KEY="sk-openai")
    assert done.returncode == 0, done.stderr
    assert endpoint.asked == ["default"] and set(endpoint.presented) == {"Bearer sk-inference"}


def test_lorastack_keys_never_go_to_a_foreign_endpoint(endpoint: StandIn) -> None:
    endpoint.lorastack, endpoint.models = False, VLLM_MODELS
    done = _ask(endpoint, LORASTACK_API_KEY="sk-inference")
    assert done.returncode == 0, done.stderr
    assert set(endpoint.presented) == {"Bearer unused"}


def test_a_refused_chat_request_is_one_line_too(endpoint: StandIn) -> None:
    """A named model skips the listing: the 401 comes from the chat request itself (openai.AuthenticationError)."""
    endpoint.key = "sk-inference"
    line = one_line_error(_ask(endpoint, "--model", "default", LORASTACK_API_KEY="sk-wrong"))
    assert "refused the API key (HTTP 401): Missing or invalid API key" in line
    assert "lorastack keys create --role inference" in line


def test_a_foreign_endpoint_refusing_the_key_names_api_key_and_openai_api_key(endpoint: StandIn) -> None:
    endpoint.lorastack, endpoint.models, endpoint.key = False, VLLM_MODELS, "sk-openai"
    for done in (_ask(endpoint), _ask(endpoint, "--model", BASE)):
        line = one_line_error(done)
        assert "refused the API key (HTTP 401)" in line and "--api-key" in line and "OPENAI_API_KEY" in line
        assert "LORASTACK" not in line


def test_the_server_of_server_json_refusing_the_key_is_one_line(endpoint: StandIn, _isolated_home: Path) -> None:
    """Pins a fix: the listing's 401 was taken for "no default alias", and ask went on with the base model."""
    endpoint.key = "sk-inference"
    _write_server_json(_isolated_home, endpoint)

    line = one_line_error(_lorastack("ask", "What is 17 * 23?", "--no-steps"))

    assert "LORASTACK_API_KEY" in line and "lorastack keys create --role inference" in line
    assert endpoint.asked == []


def test_eval_stops_at_a_refused_key_in_one_line(endpoint: StandIn, tmp_path: Path) -> None:
    endpoint.key = "sk-inference"
    eval_file = tmp_path / "eval.jsonl"
    eval_file.write_text(json.dumps({"question": "What is 17 * 23?", "answer": 391}) + "\n")
    line = one_line_error(_lorastack("eval", str(eval_file), "--base-url", f"{endpoint.url}/v1", "--model", "x"))
    assert "LORASTACK_API_KEY" in line and "lorastack keys create --role inference" in line


def test_unauthorized_is_the_front_doors_typed_error() -> None:
    assert Unauthorized.code == "invalid_api_key" and Unauthorized.status == 401


def _write_server_json(home: Path, endpoint: StandIn) -> None:
    home.mkdir(parents=True, exist_ok=True)
    state = {
        "url": endpoint.url, "pid": os.getpid(), "base_name": BASE, "base_path": "/models/smollm2",
        "base_source": "embedded", "device": "cpu", "max_lora_rank": 16, "max_loras": 4, "tool_call_parser": "hermes",
    }  # fmt: skip
    (home / "server.json").write_text(json.dumps(state))
