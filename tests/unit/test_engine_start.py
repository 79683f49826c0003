"""Starting vLLM as a user waits for it: progress with the elapsed time and the log's path, then a clear error."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest

from lorastack.errors import ServerError
from lorastack.serve.engine import VLLMProcess


def test_a_slow_start_says_what_it_waits_for_and_where_the_log_is(tmp_path: Path, caplog) -> None:
    """Regression: `lorastack serve` was silent for minutes while vLLM started, and never said where its log was.
    A real process that never answers stands in for a vLLM still loading."""
    log = tmp_path / "vllm.log"
    process = VLLMProcess([sys.executable, "-c", "import time; time.sleep(60)"], {}, "http://127.0.0.1:9", log)
    process.start()
    with caplog.at_level(logging.INFO, logger="lorastack"), pytest.raises(ServerError) as refused:
        process.wait_healthy(timeout=1.5, report_every=0.5)
    waiting = [r.getMessage() for r in caplog.records if "Still waiting for vLLM" in r.getMessage()]
    assert waiting and all(str(log) in message for message in waiting)
    assert "did not become healthy" in refused.value.message
    assert str(log) in refused.value.hint and not process.alive()
