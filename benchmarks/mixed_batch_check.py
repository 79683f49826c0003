"""Do base-model requests batched with adapter requests still get the base model's answer? (greedy, same run)

Run as: .venv/bin/python benchmarks/mixed_batch_check.py [--questions 8] [--rounds 3] [--max-loras 1]

Starts a lorastack server on the embedded default in a temporary LORASTACK_HOME (the bundled tools-demo is its
default alias). Asks each question to the base model alone (one request at a time), then again while the same question
goes to tools-demo at the same moment (--rounds times), and prints how many of the base model's batched answers
differ from its answers alone and how many are the adapter's answer instead. Greedy decoding: a base answer that
changes when an adapter request shares its batch is served with some adapter's weights.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import tempfile
from pathlib import Path

import openai

from lorastack.serve.config import ServeConfig
from lorastack.serve.registry import Registry
from lorastack.serve.server import start_server

ROOT = Path(__file__).resolve().parent.parent
SETS = ROOT / "agent" / "evalsets"


def ask(client: openai.OpenAI, model: str, item: dict) -> str:
    reply = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": item["question"]}], tools=item.get("tools"),
        temperature=0, max_tokens=48,
    )  # fmt: skip
    message = reply.choices[0].message
    calls = [(c.function.name, c.function.arguments) for c in message.tool_calls or []]
    return json.dumps(calls) + (message.content or "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-loras", type=int, default=1, help="LoRA slots: 1 = every slot holds an adapter")
    parser.add_argument("--port", type=int, default=8768)
    args = parser.parse_args()
    items = [json.loads(line) for line in (SETS / "functions.jsonl").read_text().splitlines()][: args.questions]
    home = Path(tempfile.mkdtemp(prefix="lorastack-mixed-batch-"))
    server = start_server(ServeConfig(port=args.port, max_loras=args.max_loras), Registry(home))
    try:
        client = openai.OpenAI(base_url=f"{server.state.url}/v1", api_key="unused")
        base = server.state.base_name
        alone = [ask(client, base, item) for item in items]
        adapter = [ask(client, "tools-demo", item) for item in items]
        changed = adapters_answer = total = 0
        with cf.ThreadPoolExecutor(2) as pool:
            for _ in range(args.rounds):
                for item, base_alone, adapter_alone in zip(items, alone, adapter, strict=True):
                    together = pool.submit(ask, client, base, item), pool.submit(ask, client, "tools-demo", item)
                    batched = together[0].result()
                    together[1].result()
                    total += 1
                    changed += batched != base_alone
                    adapters_answer += batched == adapter_alone != base_alone
        device = server.state.device
    finally:
        server.stop()
    print(json.dumps({
        "device": device, "max_loras": args.max_loras, "base_requests_batched_with_an_adapter_request": total,
        "base_answer_changed": changed, "base_answered_with_the_adapters_answer": adapters_answer,
    }, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
