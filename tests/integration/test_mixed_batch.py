"""A base-model request batched with adapter requests is answered by the base model (real vLLM CPU server).

vLLM's CPU LoRA ops gave base-model tokens the last slot's adapter once every slot held one (serve/cpu_lora_fix/).
"""

from __future__ import annotations

import concurrent.futures as cf

import pytest

from lorastack.serve.loading import load_adapter
from tests.integration.test_serving import _first_token_logprobs, _moved

pytestmark = pytest.mark.vllm

NAMES = ("slot-a", "slot-b", "slot-c", "slot-d")


def test_base_requests_in_a_full_batch_get_no_adapter(vllm_server, make_adapter, base_model, base_shapes) -> None:
    assert vllm_server.state.max_loras == len(NAMES)
    for seed, name in enumerate(NAMES, start=21):
        vllm_server.registry.register(name, make_adapter(seed=seed), base_model, base_shapes)
        load_adapter(vllm_server.registry, name, vllm_server.state)
    client, base = vllm_server.openai(), vllm_server.state.base_name
    alone = _first_token_logprobs(client, base)
    assert _moved(alone, _first_token_logprobs(client, NAMES[-1])) > 0.05, "the adapters must change the answer"
    with cf.ThreadPoolExecutor(len(NAMES) + 1) as pool:
        for _ in range(3):  # every slot in use, and the base model in the same batches
            futures = [pool.submit(_first_token_logprobs, client, m) for m in (*NAMES, base)]
            batched = futures[-1].result()
            for f in futures[:-1]:
                f.result()
            assert _moved(alone, batched) < 0.02, (alone, batched)
