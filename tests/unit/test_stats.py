"""`lorastack adapters stats`: the front door's Prometheus text summed per alias and version."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from lorastack.serve.cli import stats_rows


def _front_door_metrics() -> str:
    """Metrics text made by prometheus_client with the front door's metric names and labels (its Metrics class in
    lorastack.serve.front_door), recording requests the way it accounts for one."""
    registry = CollectorRegistry()
    labels = ("alias", "version")
    requests = Counter("lorastack_requests", "Inference requests", (*labels, "status"), registry=registry)
    errors = Counter("lorastack_errors", "Failed requests", (*labels, "reason"), registry=registry)
    prompt = Counter("lorastack_prompt_tokens", "Prompt tokens", labels, registry=registry)
    completion = Counter("lorastack_completion_tokens", "Completion tokens", labels, registry=registry)
    latency = Histogram("lorastack_request_seconds", "Total request time", labels, registry=registry)
    ttft = Histogram("lorastack_time_to_first_token_seconds", "Time to first token", labels, registry=registry)
    responses = Counter("lorastack_http_responses", "Every response", ("route", "status"), registry=registry)

    def account(alias: str, version: str, status: int, seconds: float = 0.0, usage=(0, 0)) -> None:
        requests.labels(alias, version, str(status)).inc()
        responses.labels("/v1/chat/completions", str(status)).inc()
        if status != 200:
            errors.labels(alias, version, f"http_{status}").inc()
            return
        latency.labels(alias, version).observe(seconds)
        ttft.labels(alias, version).observe(seconds / 2)
        prompt.labels(alias, version).inc(usage[0])
        completion.labels(alias, version).inc(usage[1])

    for seconds in (0.2, 0.4, 0.6):
        account("support", "support@v1", 200, seconds, (10, 5))
    account("support", "support@v1", 500)
    account("support", "support@v1", 499)
    account("support", "support@v2", 200, 1.0, (7, 3))
    account("default", "tools-demo@v1", 502)
    return generate_latest(registry).decode()


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
    registry = CollectorRegistry()
    Counter("lorastack_requests", "Inference requests", ("alias", "version", "status"), registry=registry)
    responses = Counter("lorastack_http_responses", "Every response", ("route", "status"), registry=registry)
    responses.labels("/health", "200").inc()
    assert stats_rows(generate_latest(registry).decode()) == {}


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
