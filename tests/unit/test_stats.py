"""`lorastack adapters stats`: the front door's Prometheus text summed per alias and version."""

from __future__ import annotations

import pytest

from lorastack.serve.cli import stats_rows
from lorastack.serve.front_door.metrics import Metrics


def _front_door_metrics() -> str:
    """The text of the front door's own Metrics, after it accounted requests as it does for each one."""
    metrics = Metrics()
    for seconds in (0.2, 0.4, 0.6):
        metrics.account(("support", "support@v1"), 200, seconds, seconds / 2, {"prompt_tokens": 10, "completion_tokens": 5})
    metrics.account(("support", "support@v1"), 500, 0, 0, None)
    metrics.account(("support", "support@v1"), 499, 0, 0, None)
    metrics.account(("support", "support@v2"), 200, 1.0, 0.5, {"prompt_tokens": 7, "completion_tokens": 3})
    metrics.account(("default", "tools-demo@v1"), 502, 0, 0, None)
    metrics.responses.labels("/v1/chat/completions", "200").inc()
    return metrics.render().decode()


def test_stats_count_every_request_and_the_failed_ones_as_errors() -> None:
    """Pins the bug: the requests column counted only failed requests (the OK ones were keyed apart as `_ok`)."""
    rows = stats_rows(_front_door_metrics())

    assert set(rows) == {("support", "support@v1"), ("support", "support@v2"), ("default", "tools-demo@v1")}
    v1 = rows[("support", "support@v1")]
    assert (v1["requests"], v1["errors"]) == (5, 2)
    assert (v1["prompt_tokens"], v1["completion_tokens"]) == (30, 15)
    assert v1["seconds_count"] == 3 and v1["seconds_sum"] / v1["seconds_count"] == pytest.approx(0.4)
    assert v1["ttft_sum"] / v1["ttft_count"] == pytest.approx(0.2)
    v2 = rows[("support", "support@v2")]
    assert (v2["requests"], v2["errors"], v2["prompt_tokens"]) == (1, 0, 7)
    failed_only = rows[("default", "tools-demo@v1")]
    assert (failed_only["requests"], failed_only["errors"], failed_only["seconds_count"]) == (1, 1, 0)


def test_stats_of_a_fresh_front_door_are_empty() -> None:
    metrics = Metrics()
    metrics.responses.labels("/health", "200").inc()
    assert stats_rows(metrics.render().decode()) == {}


def test_stats_command_prints_the_sums(monkeypatch: pytest.MonkeyPatch) -> None:
    """The command's table, with the running server stood in for by its metrics text (the thing under test is the
    CLI's reading of it)."""
    from types import SimpleNamespace

    from typer.testing import CliRunner

    from lorastack.serve import cli

    server = SimpleNamespace(client=SimpleNamespace(metrics=_front_door_metrics))
    monkeypatch.setattr(cli, "current_server", lambda home: server)
    monkeypatch.setattr(cli.console, "width", 200)

    result = CliRunner().invoke(cli.adapters, ["stats"])

    assert result.exit_code == 0, result.output
    line = next(row for row in result.output.splitlines() if "support@v1" in row)
    assert [cell.strip() for cell in line.split("│")[3:9]] == ["5", "2", "30", "15", "0.400", "0.200"]
