"""``lorastack serve`` and ``lorastack adapters ...``."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import typer
from lorastack.serve.config import ServeConfig
from lorastack.serve.loading import load_adapter, unload_adapter
from lorastack.serve.promote import promote, rollback
from lorastack.serve.registry import Registry, parse_ref
from lorastack.serve.sources import Progress, discard, fetch
from lorastack.serve.state import current_server
from rich.console import Console
from rich.progress import DownloadColumn, TaskID
from rich.progress import Progress as RichProgress

from lorastack.access import DEFAULT_ALIAS
from lorastack.errors import NotFound, ServerError
from lorastack.evaluation import PROMOTION_MIN_ACCURACY, EvalRequirement, Evaluator
from lorastack.models import resolve_base_model
from lorastack.options import config_options
from lorastack.report import folding_table

console = Console()
adapters = typer.Typer(help="Register adapters and load them into the running server.", no_args_is_help=True)


@config_options(ServeConfig, exclude={"extra_args"})
def serve(
    config: ServeConfig,
    extra_args: Optional[list[str]] = typer.Argument(None, help="Further vLLM arguments, after --."),
) -> None:
    """Serve the base model and the registry's loaded adapters through vLLM's OpenAI-compatible API."""
    config = config.model_copy(update={"extra_args": extra_args or []})
    # SIGTERM ends the server the way Ctrl-C does: through the finally below. SIGINT is set too, since a
    # shell starts background jobs with SIGINT ignored.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    started = time.monotonic()
    from lorastack.serve.server import start_server  # the web stack loads only for `serve`

    server = start_server(config, evaluator=_evaluator, data_check=_data_check)
    try:
        state = server.state
        console.print(
            f"[bold green]Serving[/] {state.base_name} at [bold]{state.url}/v1[/] "
            f"({state.device}, ready in {time.monotonic() - started:.0f} s). Ctrl-C stops it."
        )
        while server.running():
            time.sleep(1)
        raise server.failure or ServerError("The server stopped.")
    except KeyboardInterrupt:
        console.print("Stopping...")
    finally:
        server.stop()


@adapters.command()
def register(
    name: str = typer.Argument(..., help="Name clients will use as the model (a-z, 0-9, '.', '_', '-')."),
    source: str = typer.Argument(
        ...,
        metavar="SOURCE",
        help="A PEFT LoRA adapter (adapter_config.json + safetensors): a folder, hf://ORG/REPO@REVISION/SUBFOLDER "
        "(revision and subfolder optional) or s3://BUCKET/PREFIX. Credentials come from the environment (HF_TOKEN, "
        "AWS_PROFILE, AWS_ACCESS_KEY_ID...), never into the registry.",
    ),
    base_model: Optional[str] = typer.Option(
        None, help="Base model to check the adapter against. Default: the running server's, else the embedded one."
    ),
) -> None:
    """Check an adapter (downloaded first if remote) and copy it into the store as the next version of NAME."""
    registry = Registry()
    server = current_server(registry.home)
    base = server.base if (server and base_model is None) else resolve_base_model(base_model)
    with _download_progress() as progress:
        fetched = fetch(source, registry.home / "downloads", progress)
    adapter = registry.register(name, fetched.folder, base, base.weight_shapes(), fetched.origin)
    discard(fetched)
    origin = f" from {fetched.origin.url} ({fetched.origin.revision})" if fetched.origin else ""
    console.print(
        f"Registered [bold]{adapter.ref}[/]{origin} (rank {adapter.card['rank']}, sha256 {adapter.sha256[:12]}). "
        f"Clients can call it as model={adapter.name!r} (loaded on the first request), or load it now: "
        f"lorastack adapters load {adapter.name}"
    )


@contextmanager
def _download_progress() -> Iterator[Progress]:
    """A progress bar per file that an s3:// download fetches (the hub's downloads show their own)."""
    with RichProgress(*RichProgress.get_default_columns(), DownloadColumn(), console=Console(stderr=True),
                      transient=True) as bars:  # fmt: skip
        tasks: dict[str, TaskID] = {}

        def progress(file_name: str, done: int, total: int) -> None:
            if file_name not in tasks:
                tasks[file_name] = bars.add_task(file_name, total=total)
            bars.update(tasks[file_name], completed=done)

        yield progress


@adapters.command("list")
def list_() -> None:
    """List registered adapter versions and what is loaded."""
    registry = Registry()
    rows = registry.list()
    if not rows:
        console.print("No adapters registered. Add one with: lorastack adapters register NAME PATH")
        return
    loaded = {a.name: a.version for a in registry.loaded()}
    aliases: dict[str, list[str]] = {}
    for alias, target in registry.aliases().items():
        aliases.setdefault(target.ref, []).append(alias)
    table = folding_table("name", "version", "loaded", "aliases", "rank", "alpha", "base model", "created", "sha256")
    for a in rows:
        served = "yes" if loaded.get(a.name) == a.version else ("via alias" if a.ref in aliases else "")
        table.add_row(
            a.name, f"v{a.version}", served,
            ", ".join(aliases.get(a.ref, [])),
            str(a.card["rank"]), f"{a.card['alpha']:g}", a.card["base_model"], a.created, a.sha256[:12],
        )  # fmt: skip
    console.print(table)


@adapters.command()
def show(ref: str = typer.Argument(..., help="NAME (latest version) or NAME@vN.")) -> None:
    """Print an adapter version's card."""
    registry = Registry()
    adapter = registry.get(ref)
    card = dict(adapter.card, path=str(adapter.path), loaded=registry.loaded_version(adapter.name) == adapter.version)
    console.print_json(json.dumps(card))


@adapters.command()
def load(ref: str = typer.Argument(..., help="NAME (latest version) or NAME@vN.")) -> None:
    """Load an adapter into the running server (or at its next start); clients call it by NAME."""
    registry = Registry()
    result = load_adapter(registry, ref, current_server(registry.home))
    if not result.live:
        console.print(f"No server is running: {result.adapter.ref} will be loaded when `lorastack serve` starts.")
    elif result.replaced is not None:
        console.print(f"Loaded {result.adapter.ref} in place of v{result.replaced}.")
    else:
        console.print(f"Loaded {result.adapter.ref}: call it with model={result.adapter.name!r}.")


@adapters.command()
def unload(name: str = typer.Argument(..., help="Adapter name.")) -> None:
    """Take an adapter out of the running server; it is no longer restored at start."""
    registry = Registry()
    live = unload_adapter(registry, parse_ref(name)[0], current_server(registry.home))
    console.print(f"Unloaded {name}." if live else f"{name} will no longer be loaded at start.")


@adapters.command()
def pin(ref: str = typer.Argument(..., help="An alias, NAME or NAME@vN, as clients name it.")) -> None:
    """Keep an adapter loaded: with --max-loaded, it is never evicted to make room (aliases' versions are pinned
    unless unpinned)."""
    _pin(ref, True)


@adapters.command()
def unpin(ref: str = typer.Argument(..., help="An alias, NAME or NAME@vN, as clients name it.")) -> None:
    """Let an adapter be evicted again when it is the least recently used (an alias's version too)."""
    _pin(ref, False)


def _pin(ref: str, pinned: bool) -> None:
    registry = Registry()
    server = current_server(registry.home)
    if server is not None:
        served = server.client.pin(ref, pinned)["served"]
    else:
        alias = registry.alias(ref)
        served = alias.ref if alias is not None else ref
        registry.get(served)  # NotFound for a name the registry does not have
        registry.set_pin(served, pinned)
    what = f" (what {ref} serves)" if served != ref else ""
    console.print(f"{'Pinned' if pinned else 'Unpinned'} {served}{what}.")


@adapters.command()
def remove(ref: str = typer.Argument(..., help="NAME@vN for one version, NAME for all of them.")) -> None:
    """Delete adapter versions from the registry and the store (unload them first)."""
    registry = Registry()
    name, version = parse_ref(ref)
    targets = [registry.get(ref)] if version is not None else [a for a in registry.list() if a.name == name]
    if not targets:
        raise NotFound(f"No adapter {ref!r} in the registry.", "See lorastack adapters list.")
    for adapter in targets:
        registry.remove(adapter)
        console.print(f"Removed {adapter.ref}.")


@adapters.command("promote")
def promote_(
    ref: str = typer.Argument(..., help="NAME (latest version) or NAME@vN."),
    alias: str = typer.Option(DEFAULT_ALIAS, help="The alias to point at it ('default' is what ask/chat use)."),
    eval_files: Optional[list[Path]] = typer.Option(
        None, "--eval", help="Promote only if the adapter passes this eval set (JSONL, as lorastack eval); give "
        "--eval several times to run several files as one set."
    ),
    min_accuracy: float = typer.Option(
        PROMOTION_MIN_ACCURACY, min=0, max=1, help="With --eval: the accuracy the adapter needs."
    ),
    corpus: Optional[Path] = typer.Option(None, help="With --eval: documents for the search tool during the eval."),
    limit: Optional[int] = typer.Option(None, min=1, help="With --eval: only the first N items of each eval file."),
) -> None:
    """Point an alias at an adapter version, optionally only if it passes an eval set and beats the current one."""
    registry = Registry()
    requirement = EvalRequirement(tuple(eval_files), min_accuracy, corpus, limit) if eval_files else None
    if requirement is not None:
        console.print(f"The server evaluates {ref} and what {alias!r} serves now on {requirement.name}...")
    result = promote(registry, ref, alias, current_server(registry.home), requirement)
    before = f" (was {result.previous})" if result.previous else ""
    score = f": {result.accuracy:.1%} against {result.baseline:.1%} for {result.baseline_model}" if requirement else ""
    console.print(f"{alias} -> [bold]{result.adapter.ref}[/]{before}{score}.")


@adapters.command("rollback")
def rollback_(alias: str = typer.Argument(DEFAULT_ALIAS, help="The alias to point back.")) -> None:
    """Point an alias back at the version it served before."""
    registry = Registry()
    result = rollback(registry, alias, current_server(registry.home))
    console.print(f"{alias} -> [bold]{result.adapter.ref}[/] (was {result.previous or '-'}).")


_STATS_SAMPLES = {
    "lorastack_requests_total": "requests",  # every status: 200 and failed alike
    "lorastack_errors_total": "errors",  # the failed ones, every reason
    "lorastack_prompt_tokens_total": "prompt_tokens",
    "lorastack_completion_tokens_total": "completion_tokens",
    "lorastack_request_seconds_sum": "seconds_sum",
    "lorastack_request_seconds_count": "seconds_count",
    "lorastack_time_to_first_token_seconds_sum": "ttft_sum",
    "lorastack_time_to_first_token_seconds_count": "ttft_count",
}
"""The front door's Prometheus samples (``lorastack.serve.front_door``'s metrics) that ``stats`` sums, and the key
each one is summed under."""


def stats_rows(metrics_text: str) -> dict[tuple[str, str], dict[str, float]]:
    """Sum the front door's metrics text per (alias, version) into the keys of :data:`_STATS_SAMPLES` (each present
    with 0 when no sample has it): labels other than alias and version (status, reason) are summed over."""
    from prometheus_client.parser import text_string_to_metric_families  # only `stats` needs the parser

    rows: dict[tuple[str, str], dict[str, float]] = {}
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            key = _STATS_SAMPLES.get(sample.name)
            if key is None or "alias" not in sample.labels:
                continue
            row = rows.setdefault(
                (sample.labels["alias"], sample.labels.get("version", "")), dict.fromkeys(_STATS_SAMPLES.values(), 0.0)
            )
            row[key] += sample.value
    return rows


def _mean(row: dict[str, float], kind: str) -> str:
    count = row[kind + "_count"]
    return f"{row[kind + '_sum'] / count:.3f}" if count else "-"


@adapters.command()
def stats() -> None:
    """Per alias and version: requests, errors, tokens and latency, from the running front door's metrics."""
    registry = Registry()
    server = current_server(registry.home)
    if server is None:
        raise ServerError("No lorastack server is running.", "Start it with: lorastack serve")
    rows = stats_rows(server.client.metrics())
    if not rows:
        console.print("No requests yet.")
        return
    table = folding_table("alias", "version", "requests", "errors", "prompt tok", "completion tok", "mean s", "mean TTFT s")
    for (alias, version), r in sorted(rows.items()):
        table.add_row(
            alias, version or "-", f"{r['requests']:.0f}", f"{r['errors']:.0f}", f"{r['prompt_tokens']:.0f}",
            f"{r['completion_tokens']:.0f}", _mean(r, "seconds"), _mean(r, "ttft"),
        )  # fmt: skip
    console.print(table)


_evaluator: Evaluator | None = None
"""What runs a gated promotion's eval in the server; the CLI root passes the agent's (serving never imports it)."""


_data_check: Callable[[Path], str] | None = None
"""What checks training data uploaded for fine-tuning jobs; the CLI root passes the trainer's (serving never imports
the fine-tuning room)."""


def add_commands(app: typer.Typer, evaluator: Evaluator | None = None,
                 data_check: Callable[[Path], str] | None = None) -> None:  # fmt: skip
    global _evaluator, _data_check
    _evaluator, _data_check = evaluator, data_check
    app.command()(serve)
    app.add_typer(adapters, name="adapters")
