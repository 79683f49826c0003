"""The relay's side of the connection to vLLM, against a stand-in upstream (an HTTP server below the thing under test
that answers like vLLM's completions route and records which connection each request came on). What the relay
does with real vLLM (generations stopped for clients that left, vLLM dying and coming back) is in
tests/integration/test_front_door.py.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time

import pytest
import uvicorn
from fastapi.testclient import TestClient

from lorastack.serve.front_door import FrontDoor
from lorastack.serve.registry import Registry
from lorastack.serve.state import ServerState

CHUNK = b'data: {"id":"c","object":"text_completion","model":"%s","choices":[{"index":0,"text":" hi"}]}\n\n'
USAGE = b'data: {"id":"c","choices":[],"usage":{"prompt_tokens":2,"completion_tokens":3,"total_tokens":5}}\n\n'


class StandIn:
    """A stand-in for vLLM's inference routes on a free port: streams 3 chunks, the usage and [DONE]; a prompt of
    "die" makes it drop the connection after the first chunk, "linger" end the body 5 s after [DONE]. ``peers``
    records each request's client port."""

    def __init__(self) -> None:
        self.peers: list[int] = []
        self.encodings: list[bytes | None] = []
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        sock.close()
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off",
                                interface="asgi3")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    async def app(self, scope, receive, send) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.peers.append(scope["client"][1])
        self.encodings.append(dict(scope["headers"]).get(b"accept-encoding"))
        request = json.loads(body)
        model = request["model"].encode()
        if not request.get("stream"):
            answer = {"id": "c", "object": "text_completion", "model": request["model"],
                      "choices": [{"index": 0, "text": " hi hi hi"}], "usage": {"completion_tokens": 3}}  # fmt: skip
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"application/json")]})  # fmt: skip
            await send({"type": "http.response.body", "body": json.dumps(answer).encode()})
            return
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
        for i in range(3):
            await send({"type": "http.response.body", "body": CHUNK % model, "more_body": True})
            if request.get("prompt") == "die":
                await asyncio.sleep(0.05)
                raise RuntimeError("the stand-in engine dies mid-stream")
        if request.get("prompt") == "linger":  # [DONE], then the body's end only much later
            await send({"type": "http.response.body", "body": USAGE + b"data: [DONE]\n\n", "more_body": True})
            await asyncio.sleep(5)
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        await send({"type": "http.response.body", "body": USAGE + b"data: [DONE]\n\n", "more_body": False})

    def __enter__(self) -> StandIn:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "the stand-in upstream did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture
def upstream():
    with StandIn() as stand_in:
        yield stand_in


@pytest.fixture
def client(base_model, upstream: StandIn):
    url = f"http://127.0.0.1:{upstream.port}"
    state = ServerState("http://127.0.0.1:9", 0, base_model.name, base_model.path, base_model.source, "cpu", 16, 4,
                        upstream_url=url)  # fmt: skip
    door = FrontDoor(state, Registry())
    with TestClient(door.app, client=("127.0.0.1", 5000)) as test_client:  # one event loop for all requests
        yield test_client


def _stream(client: TestClient, base_model, prompt: str = "hi", usage: bool = False) -> list[bytes]:
    body = {"model": base_model.name, "prompt": prompt, "max_tokens": 3, "stream": True}
    if usage:
        body["stream_options"] = {"include_usage": True}
    with client.stream("POST", "/v1/completions", json=body) as response:
        assert response.status_code == 200
        return [event for event in response.read().split(b"\n\n") if event]


def test_streams_and_whole_answers_reuse_one_connection_to_the_engine(client, base_model, upstream) -> None:
    for _ in range(4):
        events = _stream(client, base_model)
        assert events[-1] == b"data: [DONE]" and len(events) == 4  # 3 chunks and [DONE]: the usage it added is not
    assert _stream(client, base_model, usage=True)[-2] == USAGE.strip()  # asked for: passed on as vLLM sent it
    whole = client.post("/v1/completions", json={"model": base_model.name, "prompt": "hi", "max_tokens": 3})
    assert whole.status_code == 200 and whole.json()["choices"][0]["text"] == " hi hi hi"
    assert len(upstream.peers) == 6
    assert len(set(upstream.peers)) == 1, upstream.peers  # one kept connection, not a new one per request
    assert upstream.encodings == [None] * 6  # no compression asked for: vLLM's bytes pass as they are


def test_an_engine_that_dies_mid_stream_ends_it_with_an_error_event(client, base_model, upstream) -> None:
    events = _stream(client, base_model, prompt="die")
    assert events[0].startswith(b"data: {") and b'"choices"' in events[0]
    error = json.loads(events[-1][len(b"data: "):])["error"]
    assert error["code"] == "upstream_closed" and "retry" in error["message"]
    assert _stream(client, base_model)[-1] == b"data: [DONE]"  # the next request gets a new connection and works


def test_an_engine_that_lingers_after_done_does_not_hold_the_client(client, base_model, upstream) -> None:
    started = time.monotonic()
    assert _stream(client, base_model, prompt="linger")[-1] == b"data: [DONE]"
    assert time.monotonic() - started < 4  # the relay waits about a second for the body's end, not 5
    assert _stream(client, base_model)[-1] == b"data: [DONE]"  # that connection was closed; a new one serves
