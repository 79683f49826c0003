"""The front door's state and its admin work: aliases restored at start, promotion from load to unload,
adapters loaded and unloaded through the registry only."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

import httpx

from lorastack.errors import AdapterRejected, AlreadyExists, LorastackError, ServerError
from lorastack.evaluation import Endpoint, EvalRequirement, Evaluator
from lorastack.serve.client import VLLMClient
from lorastack.serve.front_door.api_router import build_app
from lorastack.serve.front_door.metrics import Metrics
from lorastack.serve.front_door.residency import Residency
from lorastack.serve.front_door.routing import Routes, versioned
from lorastack.serve.front_door.workers import TrustedWorkers, WorkerPool
from lorastack.serve.jobs import DataCheck, FineTuning, JobSettings
from lorastack.serve.keys import KeyStore
from lorastack.serve.loading import LoadResult, checked, load_into, restore_loaded, unload_from
from lorastack.serve.registry import AdapterVersion, Registry
from lorastack.serve.state import ServerState

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Promotion:
    """What a promotion (or rollback) did: ``adapter`` now serves ``alias``; ``previous`` served it before."""

    alias: str
    adapter: AdapterVersion
    previous: str | None
    accuracy: float | None = None
    baseline: float | None = None
    baseline_model: str | None = None

    def body(self) -> dict:
        return {"alias": self.alias, "ref": self.adapter.ref, "previous": self.previous, "accuracy": self.accuracy,
                "baseline": self.baseline, "baseline_model": self.baseline_model}  # fmt: skip


class FrontDoor:
    """The front door's state and its FastAPI ``app``."""

    def __init__(
        self,
        state: ServerState,
        registry: Registry,
        keys: KeyStore | None = None,
        evaluator: Evaluator | None = None,
        upstream_key: str | None = None,
        drain_timeout: float = 600,
        max_loaded: int | None = None,
        on_demand: bool = True,
        jobs: JobSettings | None = None,
        data_check: DataCheck | None = None,
    ) -> None:
        """``state`` is the served base model and rank every adapter is checked against; its ``upstream_url`` is
        vLLM, reached with ``upstream_key`` (vLLM's own key: nothing but this process knows it). ``evaluator`` runs
        a promotion's eval (the agent's; None: promotions cannot ask for one). ``max_loaded`` adapters at most stay
        in vLLM (None: no limit); ``on_demand`` loads a registered adapter on its first request (see residency)."""
        self.state = state
        self.upstream = (state.upstream_url or state.url).rstrip("/")
        self.upstream_key = upstream_key
        self.registry = registry
        self.base_name = state.base_name
        self.keys = keys or KeyStore(registry.home)
        self.evaluator = evaluator
        self.metrics = Metrics()
        self.routes = Routes()
        self.available = threading.Event()
        self.available.set()
        self.drain_timeout = drain_timeout
        self._admin = threading.Lock()
        self.vllm = VLLMClient(self.upstream, api_key=upstream_key)
        self.pool: WorkerPool | None = None
        self.residency = Residency(self.vllm, registry, state, self.routes, self.metrics, max_loaded, on_demand)
        self.residency.changed = lambda: self.publish(wait=False)  # a load on request or an eviction: tell workers
        # Fine-tuning jobs (OpenAI's files and fine_tuning.jobs): a finished job is served through a promotion.
        self.jobs = FineTuning(registry, state.base, lambda ref, alias: self.promote(ref, alias), jobs, data_check)
        self.app = build_app(self)

    def attach_workers(self, pool: WorkerPool) -> None:
        """Serve through ``pool``'s worker processes (before the app starts): this process becomes their control."""
        self.pool = pool
        self.app.add_middleware(TrustedWorkers, token=pool.token)
        pool.on_use = self._used  # requests the workers served count for least-recently-used eviction
        self.residency.retiring = self._retiring
        self.publish(wait=False)

    def _used(self, used: dict[str, int]) -> None:
        for name in used:
            self.residency.touch(name)

    def _retiring(self, name: str) -> None:
        """An adapter to be evicted: no worker routes it any more (its next request comes here and loads it
        again), and none has a request on it in flight."""
        self.publish()
        if self.pool is not None and not self.pool.drained(name, self.residency.busy_wait_s):
            logger.warning("A front-door worker still has requests on %s; evicting it anyway", name)

    def publish(self, wait: bool = True) -> None:
        """Hand the workers the current routes (no-op without workers); with ``wait``, once they all applied them."""
        if self.pool is None:
            return
        aliases = self.routes.snapshot()
        served = set(self.residency.resident) if self.available.is_set() else set()
        self.pool.publish(aliases, {self.base_name, *served}, self.available.is_set(), wait)

    def drain(self, upstream: str, timeout: float) -> bool:
        """Wait until no request is in flight on ``upstream``, here and in every worker."""
        if not self.routes.drain(upstream, timeout):
            return False
        return self.pool is None or self.pool.drained(upstream, timeout)

    # -- at start ----------------------------------------------------------------------------------------------

    def restore(self) -> list[LorastackError]:
        """Load every adapter marked loaded, and every aliased version under its versioned name (at every start of
        vLLM); report, not raise, what fails."""
        with self._admin:  # a promotion cannot interleave with a restore
            self.residency.sync()
            # Aliases first: they are pinned, and with --max-loaded the marked adapters then take the slots left.
            failures = self._restore_aliases() + restore_loaded(self.registry, self.state, self.residency)
            self.publish(wait=False)
            return failures

    def _restore_aliases(self) -> list[LorastackError]:
        errors: list[LorastackError] = []
        served = self.residency.served_adapters()
        for alias, adapter in self.registry.aliases().items():
            name = versioned(adapter)
            try:
                if name not in served:
                    checked(self.registry, adapter.ref, self.state)
                    with self.residency.hold(name):  # not evicted for the next one before its alias pins it
                        self.residency.load_adapter(name, str(adapter.path), trigger="restore")
                    served[name] = str(adapter.path)
            except LorastackError as exc:
                errors.append(exc)
                logger.warning("Could not restore alias %s -> %s: %s", alias, adapter.ref, exc)
                continue
            self.routes.switch(alias, name)
            logger.info("Alias %s -> %s", alias, adapter.ref)
        return errors

    # -- loading through the registry ------------------------------------------------------------------------

    def load(self, ref: str) -> LoadResult:
        """Load a registered version under its name: checked against the served base and rank, sha256 verified."""
        with self._admin:
            result = load_into(self.registry, ref, self.state, self.residency)
            self.publish()
            return result

    def unload(self, name: str) -> bool:
        with self._admin:
            live = unload_from(self.registry, name, self.residency)
            self.publish()
            return live

    def pin(self, ref: str, pinned: bool) -> str:
        """Pin (or unpin) what ``ref`` serves: an alias's version, ``name@vN`` or ``name``. Returns the served name."""
        with self._admin:
            upstream = self.routes.snapshot().get(ref) or ref
            self.residency.resolve(upstream)  # NotFound for a name the registry does not have
            self.residency.pin(upstream, pinned)
            return upstream

    # -- promotion ---------------------------------------------------------------------------------------------

    def promote(self, ref: str, alias: str, requirement: EvalRequirement | None = None) -> Promotion:
        """The whole promotion, owned here: check ``ref``, load it beside what ``alias`` serves, run the eval if
        ``requirement`` asks for one (it must reach the floor and beat the alias's current version, or the base
        model), check it with one real completion, switch the alias, then retire the old version once drained.

        Any failure before the switch unloads the candidate (if this promotion loaded it) and leaves the alias,
        the registry and vLLM as they were.
        """
        with self._admin:
            adapter = checked(self.registry, ref, self.state)
            name = versioned(adapter)
            current = self.routes.snapshot().get(alias)
            if current == name:
                raise AlreadyExists(f"The alias {alias!r} already serves {adapter.ref}.", "Nothing to do.")
            baseline_model = current or self.base_name
            baseline = accuracy = None
            if requirement is not None:
                baseline = self._evaluate(requirement, baseline_model)
            fresh = name not in self.residency.served_adapters()
            with self.residency.hold(name):  # not evicted for another adapter before its alias pins it
                if fresh:
                    self.residency.load_adapter(name, str(adapter.path))
                try:
                    if requirement is not None:
                        accuracy = self._evaluate(requirement, name)
                        _require(requirement, adapter, alias, accuracy, baseline_model, baseline)
                    self._probe(name)
                    self.registry.set_alias(alias, adapter)  # persisted first: if this fails, nothing has switched
                    old = self.routes.switch(alias, name)  # the switch itself: one assignment under the routes lock
                except BaseException:
                    if fresh:
                        self._unload_quietly(name)
                    raise
            self.publish()  # with workers: returns once every one of them routes the alias to the new version
        if old and old != name:
            threading.Thread(target=self._retire, args=(old,), daemon=True, name=f"retire-{old}").start()
        if requirement is None:
            return Promotion(alias, adapter, old)
        return Promotion(alias, adapter, old, accuracy, baseline, baseline_model)

    def rollback(self, alias: str) -> Promotion:
        """Promote, the same way, the version ``alias`` served before the current one."""
        _, previous = self.registry.rollback_target(alias)
        return self.promote(previous.ref, alias)

    def _evaluate(self, requirement: EvalRequirement, model: str) -> float:
        if self.evaluator is None:
            raise ServerError(
                "This server was started without an evaluator, so it cannot make a promotion wait for an eval.",
                "Start it with lorastack serve, or promote without --eval.",
            )
        logger.info("Evaluating %s on %s...", model, requirement.name)
        endpoint = Endpoint(f"{self.upstream}/v1", self.upstream_key or "unused", self.state.tool_call_parser is not None)
        return self.evaluator(requirement, endpoint, model)

    def _unload_quietly(self, name: str) -> None:
        """Take a candidate out again after a failed promotion; the promotion's own error is what the caller sees."""
        try:
            self.residency.unload_adapter(name)
        except LorastackError as exc:
            logger.warning("Could not unload %s after its failed promotion: %s", name, exc)

    def _probe(self, name: str) -> None:
        """One real completion on ``name``: a version that cannot answer is never switched to."""
        body = {"model": name, "messages": [{"role": "user", "content": "ping"}], "max_tokens": 1}
        headers = {"Authorization": f"Bearer {self.upstream_key}"} if self.upstream_key else {}
        try:
            response = httpx.post(f"{self.upstream}/v1/chat/completions", json=body, timeout=120, headers=headers)
        except httpx.TransportError as exc:
            raise ServerError(f"{name} did not answer its check ({exc.__class__.__name__}).") from None
        if not response.is_success:
            raise AdapterRejected(f"{name} failed its check (HTTP {response.status_code}): {response.text[:200]}")

    def _retire(self, upstream: str) -> None:
        if not self.drain(upstream, self.drain_timeout):
            logger.warning("%s still busy after %s s; left loaded", upstream, self.drain_timeout)
            return
        with self._admin:  # no promotion may re-point an alias at it between the check and the unload
            with self.routes.lock:
                if upstream in self.routes.aliases.values() or self.routes.inflight[upstream] > 0:
                    return
            try:
                self.residency.unload_adapter(upstream)
                logger.debug("Unloaded %s after it drained", upstream)
            except LorastackError as exc:
                logger.warning("Could not unload %s: %s", upstream, exc)
            self.publish(wait=False)


def _require(requirement: EvalRequirement, adapter: AdapterVersion, alias: str, accuracy: float,
             baseline_model: str, baseline: float | None) -> None:  # fmt: skip
    baseline = baseline or 0.0
    if accuracy >= requirement.min_accuracy and accuracy > baseline:
        return
    raise AdapterRejected(
        f"{adapter.ref} scored {accuracy:.1%} on {requirement.name}, {baseline_model} {baseline:.1%}: "
        f"it needs at least {requirement.min_accuracy:.0%} and to beat {baseline_model}, so {alias!r} stays "
        f"where it is.",
        "Train it further, or give another --eval / --min-accuracy.",
    )
