"""Aliases from the command line: ``promote`` points one at an adapter version, ``rollback`` points it back.

With a server running, the front door owns the whole promotion (load beside, eval, check, switch, drain, unload:
``lorastack.serve.front_door``) and this is its client; without one, the registry records the alias after the same
checks, and the next start serves it. An eval needs the running server, which runs it.
"""

from __future__ import annotations

from dataclasses import dataclass

from lorastack.errors import AlreadyExists, ServerError
from lorastack.evaluation import EvalRequirement
from lorastack.serve.loading import checked
from lorastack.serve.registry import AdapterVersion, Registry
from lorastack.serve.state import ServerState


@dataclass(frozen=True)
class Promotion:
    adapter: AdapterVersion
    previous: str | None
    """The version ref the alias served before (None: the alias is new)."""
    accuracy: float | None = None
    baseline: float | None = None
    baseline_model: str | None = None


def promote(
    registry: Registry, ref: str, alias: str, server: ServerState | None, requirement: EvalRequirement | None = None
) -> Promotion:
    """Point ``alias`` at ``ref``; with a ``requirement``, only if the adapter passes its eval. A refusal changes
    nothing."""
    if server is not None:
        return _answer(registry, server.client.promote(ref, alias, requirement))
    if requirement is not None:
        raise ServerError(
            "The eval of a promotion runs in the server.", "Start it (lorastack serve) in another terminal, then promote."
        )
    adapter = checked(registry, ref, None)
    current = registry.alias(alias)
    if current is not None and current.ref == adapter.ref:
        raise AlreadyExists(f"The alias {alias!r} already serves {adapter.ref}.", "Nothing to do.")
    registry.set_alias(alias, adapter)
    return Promotion(adapter, current.ref if current else None)


def rollback(registry: Registry, alias: str, server: ServerState | None) -> Promotion:
    """Point ``alias`` one step back through its promotions (:meth:`Registry.rollback_target`); repeated, it walks
    back to the first, then refuses."""
    if server is not None:
        return _answer(registry, server.client.rollback(alias))
    current, previous = registry.rollback_target(alias)
    adapter = checked(registry, previous.ref, None)
    registry.set_alias(alias, adapter)
    return Promotion(adapter, current.ref)


def _answer(registry: Registry, body: dict) -> Promotion:
    return Promotion(
        registry.get(body["ref"]), body.get("previous"), body.get("accuracy"), body.get("baseline"),
        body.get("baseline_model"),
    )  # fmt: skip
