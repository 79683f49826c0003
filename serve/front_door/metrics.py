"""The front door's Prometheus metrics: per alias and version for inference, and every response it sends."""

from __future__ import annotations

from collections.abc import Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.metrics_core import Metric

_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300)


class Metrics:
    """Inference metrics labelled by the model the client asked for (``alias``) and the version that served it,
    and a count of every HTTP response by route template and status."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        labels = ("alias", "version")
        self.requests = Counter("lorastack_requests", "Inference requests", (*labels, "status"), registry=self.registry)
        self.prompt_tokens = Counter("lorastack_prompt_tokens", "Prompt tokens", labels, registry=self.registry)
        self.completion_tokens = Counter(
            "lorastack_completion_tokens", "Completion tokens", labels, registry=self.registry
        )
        self.errors = Counter("lorastack_errors", "Failed requests", (*labels, "reason"), registry=self.registry)
        self.latency = Histogram(
            "lorastack_request_seconds", "Total request time", labels, buckets=_LATENCY_BUCKETS, registry=self.registry
        )
        self.ttft = Histogram(
            "lorastack_time_to_first_token_seconds", "Time to the first streamed token (or the whole reply)", labels,
            buckets=_LATENCY_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.responses = Counter(
            "lorastack_http_responses", "Every response the front door sent, by route template and status",
            ("route", "status"), registry=self.registry,
        )  # fmt: skip

    def render(self, others: Iterable[list] = ()) -> bytes:
        """The exposition text; ``others``: :meth:`samples` of front-door workers, added in (counters and histograms
        summed; a series' ``_created`` is its earliest)."""
        others = [o for o in others if o]
        if not others:
            return generate_latest(self.registry)
        families: dict[str, Metric] = {}
        values: dict[tuple, float] = {}
        for rows in (self.samples(), *others):
            for family, kind, doc, name, labels, value in rows:
                if family not in families:
                    families[family] = Metric(family, doc, kind)
                key = (family, name, tuple(sorted(labels.items())))
                if key not in values:
                    values[key] = value
                elif name.endswith("_created"):
                    values[key] = min(values[key], value)
                else:
                    values[key] += value
        for (family, name, labels), value in values.items():
            families[family].add_sample(name, dict(labels), value)
        merged = CollectorRegistry(auto_describe=False)
        merged.register(_Fixed(list(families.values())))
        return generate_latest(merged)

    def samples(self) -> list[list]:
        """Every sample as ``[family, type, help, sample name, labels, value]`` (what a worker reports)."""
        return [[f.name, f.type, f.documentation, s.name, s.labels, s.value]
                for f in self.registry.collect() for s in f.samples]  # fmt: skip

    def account(self, labels: tuple[str, str], status: int | str, seconds: float, ttft: float,
                usage: dict | None) -> None:  # fmt: skip
        """One inference request, as it ended."""
        self.requests.labels(*labels, str(status)).inc()
        if str(status) != "200":
            self.errors.labels(*labels, f"http_{status}").inc()
            return
        self.latency.labels(*labels).observe(seconds)
        self.ttft.labels(*labels).observe(ttft)
        if isinstance(usage, dict):
            prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
            self.prompt_tokens.labels(*labels).inc(prompt if isinstance(prompt, int) and prompt > 0 else 0)
            self.completion_tokens.labels(*labels).inc(
                completion if isinstance(completion, int) and completion > 0 else 0
            )


class CountResponses:
    """ASGI middleware: counts each response by the route template that matched (never the raw path, so clients
    cannot grow the label set) and its status."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def counted(message: Message) -> None:
            if message["type"] == "http.response.start" and not scope.get("lorastack_forwarded"):
                route = scope.get("route")
                template = getattr(route, "path", None) or "unmatched"
                self.metrics.responses.labels(template, str(message["status"])).inc()
            await send(message)

        await self.app(scope, receive, counted)


class _Fixed:
    """A collector of families already built (the merged view of the control process and its workers)."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> list[Metric]:
        return self.families
