"""The serving stack on the official CUDA vLLM: what differs from the CPU build.

Runs with the other integration tests (the session's server, conftest.vllm_server) on a machine with a CUDA GPU and
the `cuda` extra; skipped elsewhere. The registry, restart, aliases, promotion, keys and metrics tests in
test_serving.py and test_front_door.py run there unchanged, on CUDA.
"""

from __future__ import annotations

import threading
from pathlib import Path

import httpx
import pytest
from lorastack.serve.loading import load_adapter

pytestmark = [pytest.mark.gpu, pytest.mark.vllm]


def _vllm_argv(state) -> list[str]:
    return [a.decode() for a in Path(f"/proc/{state.engine_pid}/cmdline").read_bytes().split(b"\0") if a]


def test_cuda_build_runs_as_vllm_serve(vllm_server) -> None:
    """`--device auto` picks the official build on a GPU and starts it as `vllm serve` (not the deprecated
    api_server module, which the CPU build still needs), with adapters kept in host memory beyond the batch slots."""
    state = vllm_server.state
    assert state.device == "cuda"
    argv = _vllm_argv(state)
    assert argv[1:4] == ["-m", "vllm.entrypoints.cli.main", "serve"], argv
    assert argv[4] == state.base_path
    assert argv[argv.index("--max-loras") + 1] == "4"  # conftest asks for 4
    assert argv[argv.index("--max-cpu-loras") + 1] == "16"  # 4 x max_loras on CUDA


def test_hermes_tool_calls_parsed_on_cuda(vllm_server) -> None:
    """The embedded model's tool template and vLLM's hermes parser, on the CUDA build: a forced tool call comes back
    as an OpenAI tool call (the CPU build's test of the same is in test_agent_serving.py)."""
    forced = r'<tool_call>\n\{"name": "calculator", "arguments": \{"expression": "17 \* 23"\}\}\n</tool_call>'
    tool = {"type": "function", "function": {"name": "calculator", "description": "Evaluate arithmetic.",
            "parameters": {"type": "object", "properties": {"expression": {"type": "string"}}}}}  # fmt: skip
    body = {"model": vllm_server.state.base_name, "messages": [{"role": "user", "content": "What is 17*23?"}],
            "tools": [tool], "max_tokens": 60, "temperature": 0, "structured_outputs": {"regex": forced}}  # fmt: skip
    reply = httpx.post(f"{vllm_server.state.url}/v1/chat/completions", json=body, timeout=120).json()
    choice = reply["choices"][0]
    assert choice["finish_reason"] == "tool_calls", reply
    (call,) = choice["message"]["tool_calls"]
    assert call["function"] == {"name": "calculator", "arguments": '{"expression": "17 * 23"}'}


def test_more_adapters_than_slots_stream_at_once(vllm_server, make_adapter, base_model, base_shapes) -> None:
    """Six adapters in flight on four batch slots, through the front door: every stream completes (vLLM queues the
    ones without a slot), each adapter answers as itself, and the metrics count every one."""
    registry, state = vllm_server.registry, vllm_server.state
    names = [f"slot{i}" for i in range(6)]
    for i, name in enumerate(names):
        registry.register(name, make_adapter(rank=16, seed=40 + i), base_model, base_shapes)
        load_adapter(registry, name, state)
    client = vllm_server.openai()
    answers: dict[str, set] = {}
    errors: list[Exception] = []

    def stream(name: str) -> None:
        try:
            chunks = client.chat.completions.create(model=name, messages=[{"role": "user", "content": "Count."}],
                                                    max_tokens=24, temperature=0, stream=True)  # fmt: skip
            answers[name] = {chunk.model for chunk in chunks}
        except Exception as exc:  # noqa: BLE001 - any failure is what the test counts
            errors.append(exc)

    threads = [threading.Thread(target=stream, args=(n,)) for n in names for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert {name: models for name, models in answers.items()} == {name: {name} for name in names}
    metrics = state.client.metrics()
    for name in names:
        assert f'lorastack_requests_total{{alias="{name}",status="200",version=""}} 4.0' in metrics
