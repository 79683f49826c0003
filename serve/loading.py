"""Loading registered adapters into the running server, and taking them out again.

Commands go through the front door (``load_adapter``, ``unload_adapter``); the front door alone talks to vLLM
(``load_into``, ``unload_from``, ``restore_loaded``), after the compatibility check and the sha256.

The registry's ``loaded`` set is the serving state to restore: ``load`` marks an adapter only after
the server took it, ``unload`` clears the mark after the server let it go, and a server that starts
loads every marked adapter again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from lorastack.errors import LorastackError, NotFound
from lorastack.serve.compatibility import check_compatible, check_rank, inspect_adapter
from lorastack.serve.registry import AdapterVersion, Registry
from lorastack.serve.client import VLLMClient
from lorastack.serve.state import ServerState

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadResult:
    adapter: AdapterVersion
    live: bool
    """True if the running server took it now; False if it waits for the next server start."""
    replaced: int | None = None
    """The version of the same name that it replaced in the server, if any."""


def checked(registry: Registry, ref: str, server: ServerState | None) -> AdapterVersion:
    """Look up ``ref`` and run the whole compatibility check on it: intact files, fits the server's base and rank."""
    adapter = registry.get(ref)
    registry.verify(adapter)
    info = inspect_adapter(adapter.path)
    if server is not None:
        check_compatible(info, server.base, server.base.weight_shapes())
        check_rank(info, server.max_lora_rank)
    return adapter


def load_adapter(registry: Registry, ref: str, server: ServerState | None) -> LoadResult:
    """Load ``ref`` (``name`` or ``name@vN``) under its name: through the running front door (which checks it and
    loads it into vLLM), or marked for the next start when no server runs."""
    if server is None:
        adapter = checked(registry, ref, None)
        registry.mark_loaded(adapter)
        return LoadResult(adapter, live=False)
    body = server.client.load(ref)
    return LoadResult(registry.get(body["ref"]), live=True, replaced=body.get("replaced"))


def unload_adapter(registry: Registry, name: str, server: ServerState | None) -> bool:
    """Take ``name`` out of the server (through its front door) and clear its mark. Returns whether it was served."""
    if server is not None:
        return bool(server.client.unload(name)["live"])
    if registry.loaded_version(name) is None:
        raise NotFound(f"Adapter {name!r} is not loaded.", "See lorastack adapters list.")
    registry.mark_unloaded(name)
    return False


def load_into(registry: Registry, ref: str, state: ServerState, vllm: VLLMClient) -> LoadResult:
    """The front door's load: check ``ref`` against the served base and rank, load it into vLLM under its name,
    mark it loaded. A failure leaves vLLM and the registry as they were."""
    adapter = checked(registry, ref, state)
    previous = registry.loaded_version(adapter.name)
    served = vllm.served_adapters()
    replacing = adapter.name in served
    # Each version has its own folder, so replacing in place never reuses another version's cache.
    vllm.load_adapter(adapter.name, str(adapter.path), replace=replacing)
    try:
        registry.mark_loaded(adapter)
    except BaseException:
        # Put vLLM back as it was before we touched it.
        if replacing:
            vllm.load_adapter(adapter.name, served[adapter.name], replace=True)
        else:
            vllm.unload_adapter(adapter.name)
        raise
    return LoadResult(adapter, live=True, replaced=previous if replacing and previous != adapter.version else None)


def unload_from(registry: Registry, name: str, vllm: VLLMClient) -> bool:
    """The front door's unload: take ``name`` out of vLLM and clear its mark. Returns whether vLLM had it."""
    marked = registry.loaded_version(name) is not None
    live = name in vllm.served_adapters()
    if not marked and not live:
        raise NotFound(f"Adapter {name!r} is not loaded.", "See lorastack adapters list.")
    if live:
        vllm.unload_adapter(name)
    registry.mark_unloaded(name)
    return live


def restore_loaded(registry: Registry, state: ServerState, vllm: VLLMClient) -> list[LorastackError]:
    """Load every adapter marked loaded into a freshly started vLLM; report, not raise, failures.

    An adapter that fails the check now (its files changed, the base or rank differs) stays marked,
    so that it comes back once the cause is fixed; the server serves the rest.
    """
    errors: list[LorastackError] = []
    for adapter in registry.loaded():
        try:
            adapter = checked(registry, adapter.ref, state)
            vllm.load_adapter(adapter.name, str(adapter.path))
        except LorastackError as exc:
            errors.append(exc)
            logger.warning("Could not restore %s: %s", adapter.ref, exc)
        else:
            logger.info("Restored adapter %s", adapter.ref)
    return errors
