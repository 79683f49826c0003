"""Schemathesis against the front door's own OpenAPI document, on the real vLLM CPU server: whatever it sends,
the front door answers without a server error (5xx). Generation is capped at two tokens a request, so the run
stays within a few minutes on a CPU.

Each operation's cases are drawn with Hypothesis from schemathesis' strategy for it (schemathesis' pytest
plugin does not run under pytest 9).
"""

from __future__ import annotations

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error

pytestmark = pytest.mark.vllm

EXAMPLES = 40
"""Cases per operation."""


def test_no_request_makes_the_front_door_fail(vllm_server) -> None:
    url = vllm_server.state.url
    document = httpx.get(f"{url}/openapi.json", timeout=30).json()
    schema = schemathesis.openapi.from_dict(document)
    sent: dict[str, int] = {}
    for result in schema.get_all_operations():
        operation = result.ok()

        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck),
                  phases=[Phase.explicit, Phase.generate], database=None)  # fmt: skip
        @given(case=operation.as_strategy())
        def fuzz(case) -> None:
            if isinstance(case.body, dict) and case.path in ("/v1/chat/completions", "/v1/completions"):
                case.body["max_tokens"] = 2  # a bounded generation on a CPU, whatever else was generated
            sent[operation.label] = sent.get(operation.label, 0) + 1
            case.call_and_validate(base_url=url, checks=[not_a_server_error], timeout=120)

        fuzz()
    print(f"\nschemathesis: {sum(sent.values())} requests over {len(sent)} operations: {sent}")
    assert len(sent) >= 10 and all(n >= 1 for n in sent.values())  # every operation of the document was tried
