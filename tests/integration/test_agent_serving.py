"""The agent's side of serving, through the real vLLM CPU server: the tool template, vLLM's hermes parser,
and the agent loop in both tool modes.

The 135M base model rarely chooses a tool by itself, so the parser test forces the model's output with
vLLM's structured outputs (a regex) and checks what the server makes of it.
"""

from __future__ import annotations

import re

import httpx
import pytest

from lorastack.agent.config import AgentConfig
from lorastack.agent.session import Endpoint, ask
from lorastack.tools.calculator import calculator_tool

pytestmark = pytest.mark.vllm

CALCULATOR = {
    "type": "function",
    "function": {
        "name": "calculator",
        "description": "Evaluate an arithmetic expression.",
        "parameters": {"type": "object", "properties": {"expression": {"type": "string"}}, "required": ["expression"]},
    },
}


def test_server_parses_hermes_tool_calls(vllm_server) -> None:
    assert vllm_server.state.tool_call_parser == "hermes"
    client, base = vllm_server.openai(), vllm_server.state.base_name
    forced = r'<tool_call>\n\{"name": "calculator", "arguments": \{"expression": "17 \* 23"\}\}\n</tool_call>'

    response = client.chat.completions.create(
        model=base, messages=[{"role": "user", "content": "What is 17*23?"}], tools=[CALCULATOR],
        max_tokens=60, temperature=0, extra_body={"structured_outputs": {"regex": forced}},
    )  # fmt: skip

    choice = response.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls
    assert call.function.name == "calculator"
    assert call.function.arguments == '{"expression": "17 * 23"}'


def test_server_template_renders_tool_history(vllm_server) -> None:
    """The prompt the server renders for a tool conversation holds the tool signatures, the model's call and the
    tool's reply, in the template's Hermes tags: read back through vLLM's /tokenize (chat messages) and
    /detokenize, and tied to what a chat completion of the same conversation was given."""
    history = [
        {"role": "user", "content": "What is 17*23?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "calculator", "arguments": '{"expression": "17*23"}'}},
        ]},
        {"role": "tool", "tool_call_id": "call_1", "content": "391"},
    ]  # fmt: skip
    base = vllm_server.state.base_name
    with httpx.Client(base_url=vllm_server.state.url, timeout=120) as http:
        tokenized = http.post("/tokenize", json={"model": base, "messages": history, "tools": [CALCULATOR]})
        tokens = tokenized.raise_for_status().json()["tokens"]
        prompt = http.post("/detokenize", json={"model": base, "tokens": tokens}).raise_for_status().json()["prompt"]

    tools = re.search(r"<tools>(.*)</tools>", prompt, re.S)
    assert tools and '"name": "calculator"' in tools[1] and "Evaluate an arithmetic expression." in tools[1], prompt
    assert '<tool_call>\n{"name": "calculator", "arguments": {"expression": "17*23"}}\n</tool_call>' in prompt, prompt
    assert "<tool_response>\n391\n</tool_response>" in prompt, prompt
    assert prompt.rstrip().endswith("assistant")  # the generation prompt follows the tool's reply

    response = vllm_server.openai().chat.completions.create(
        model=base, messages=history, tools=[CALCULATOR], max_tokens=1, temperature=0
    )
    assert response.usage.prompt_tokens == len(tokens)  # the completion was given this same prompt


@pytest.mark.parametrize("mode", ["native", "react"])
def test_agent_answers_through_the_server(vllm_server, mode: str) -> None:
    state = vllm_server.state
    endpoint = Endpoint(f"{state.url}/v1", "unused", state.base_name, tool_calling=True)
    config = AgentConfig(tool_mode=mode, max_steps=3, max_tokens=48, timeout=240)

    result = ask("What is 12 times 11?", endpoint, config, [calculator_tool])

    assert result.answer
    assert 1 <= result.model_calls <= 3
    assert result.model_seconds > 0
