"""Aliases: ``promote`` points one at an adapter version (optionally only if it passes an eval set and beats
what the alias serves now), ``rollback`` points it back.

With a server running, the switch itself is the front door's (``lorastack.serve.gateway``: load beside, check, switch,
drain); without one, the registry records the alias and the next start serves it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lorastack.errors import AdapterRejected, AlreadyExists, ServerError
from lorastack.serve.loading import checked
from lorastack.serve.registry import AdapterVersion, Registry
from lorastack.serve.state import ServerState


@dataclass(frozen=True)
class EvalGate:
    """Promote only if the adapter answers ``eval_file`` at ``min_accuracy`` or better and beats the alias's
    current version (the base model when the alias is new)."""

    eval_file: Path
    min_accuracy: float = 0.8
    corpus: Path | None = None
    limit: int | None = None


@dataclass(frozen=True)
class Promotion:
    adapter: AdapterVersion
    previous: AdapterVersion | None
    accuracy: float | None = None
    baseline: float | None = None
    baseline_model: str | None = None


def promote(
    registry: Registry,
    ref: str,
    alias: str,
    server: ServerState | None,
    gate: EvalGate | None = None,
    say: Callable[[str], None] = lambda msg: None,
) -> Promotion:
    """Point ``alias`` at ``ref``; with a ``gate``, only if the adapter passes it. A refusal changes nothing."""
    adapter = checked(registry, ref, server)
    current = registry.alias(alias)
    if current is not None and current.ref == adapter.ref:
        raise AlreadyExists(f"The alias {alias!r} already serves {adapter.ref}.", "Nothing to do.")
    if gate is None:
        return Promotion(adapter, _switch(registry, adapter, alias, server, current))
    if server is None:
        raise ServerError(
            "The eval gate asks the running server.", "Start it (lorastack serve) in another terminal, then promote."
        )
    from lorastack.agent.config import AgentConfig
    from lorastack.agent.eval_run import run_eval
    from lorastack.agent.evaluate import load_items

    from lorastack.agent.session import local_key

    items = load_items(gate.eval_file, gate.limit)
    config = AgentConfig(base_url=f"{server.url}/v1", api_key=local_key())  # this server, whatever the home
    served = {m["id"] for m in server.client.models()}
    baseline_model = alias if current is not None and alias in served else server.base_name
    say(f"Evaluating {baseline_model} (what {alias!r} serves now) on {len(items)} items...")
    baseline = run_eval(items, config, [baseline_model], gate.corpus, say)[0].accuracy
    # The candidate is evaluated under its versioned name, the one the front door promotes: neither the alias nor
    # an adapter served under its plain name is touched, and a refusal takes it out again.
    candidate = adapter.ref
    fresh = candidate not in served
    if fresh:
        server.client.load_adapter(candidate, str(adapter.path))
    try:
        say(f"Evaluating {candidate}...")
        accuracy = run_eval(items, config, [candidate], gate.corpus, say)[0].accuracy
        if accuracy < gate.min_accuracy or accuracy <= baseline:
            raise AdapterRejected(
                f"{adapter.ref} scored {accuracy:.1%} on {gate.eval_file.name} ({len(items)} items), "
                f"{baseline_model} {baseline:.1%}: it needs at least {gate.min_accuracy:.0%} and to beat "
                f"{baseline_model}, so {alias!r} stays on {current.ref if current else 'the base model'}.",
                "Train it further, or give another --eval / --min-accuracy.",
            )
    except BaseException:
        if fresh:
            server.client.unload_adapter(candidate)
        raise
    return Promotion(adapter, _switch(registry, adapter, alias, server, current), accuracy, baseline, baseline_model)


def rollback(registry: Registry, alias: str, server: ServerState | None) -> Promotion:
    """Point ``alias`` back at the version it served before the current one."""
    current, previous = registry.rollback_target(alias)
    adapter = checked(registry, previous.ref, server)
    return Promotion(adapter, _switch(registry, adapter, alias, server, current))


def _switch(
    registry: Registry, adapter: AdapterVersion, alias: str, server: ServerState | None, current: AdapterVersion | None
) -> AdapterVersion | None:
    """Point ``alias`` at ``adapter``: through the running front door, else in the registry for the next start."""
    if server is None:
        registry.set_alias(alias, adapter)
    else:
        server.client.promote(adapter.ref, alias)
    return current
