"""Adapter and base model sources: s3:// against a real S3 API server (moto's, on 127.0.0.1), hf:// through
huggingface_hub's own snapshot_download against a hub cache the test lays out, and a registry of before remote sources
still opening."""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from lorastack.finetune.config import load_train_config
from lorastack.serve.jobs.runner import JobSettings, train_arguments
from lorastack.serve.registry import Registry
from lorastack.serve.sources import FETCHED, HubSource, S3Source, SourceError, discard, fetch, parse

from lorastack.errors import LorastackError, NotFound
from lorastack.models import resolve_base_model
from tests.conftest import free_port

SECRET = "not-a-real-secret-key-0123456789"


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """A boto3 S3 client on a moto server started for the test; lorastack's own client finds it through the
    environment, as a user's would (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID...)."""
    import boto3
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    for key, value in {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "AKIATESTKEY",
        "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": "/nonexistent", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
    }.items():  # fmt: skip
        monkeypatch.setenv(key, value)
    client = boto3.client("s3")
    client.create_bucket(Bucket="adapters")
    try:
        yield client
    finally:
        server.stop()


def _upload(client: object, folder: Path, prefix: str) -> None:
    for path in folder.iterdir():
        client.upload_file(str(path), "adapters", f"{prefix}/{path.name}")


def test_parse_accepts_the_documented_forms_and_refuses_the_rest() -> None:
    assert parse("hf://org/repo") == HubSource("org/repo", None, "")
    assert parse("hf://org/repo@v1.0/sub/dir/") == HubSource("org/repo", "v1.0", "sub/dir")
    assert parse("s3://my-bucket/a/b/") == S3Source("my-bucket", "a/b")
    for bad in ("hf://org", "hf://org/re po", "hf://org/repo/../x", "hf://org/repo@/x", "s3://B/x", "s3://b",
                "s3://key:secret@bucket/x", "ftp://x/y", "hf://o@x/repo"):  # fmt: skip
        with pytest.raises(SourceError):
            parse(bad)


def test_s3_adapter_registers_with_url_and_etags_never_credentials(
    s3, make_adapter: Callable[..., Path], base_model, base_shapes, tmp_path: Path
) -> None:
    adapter = make_adapter()
    _upload(s3, adapter, "team/support")
    registry = Registry(tmp_path / "home")
    seen: list[tuple[str, int, int]] = []

    fetched = fetch("s3://adapters/team/support/", registry.home / "downloads", lambda *a: seen.append(a))
    registered = registry.register("support", fetched.folder, base_model, base_shapes, fetched.origin)
    discard(fetched)

    assert registered.card["source"] == "s3://adapters/team/support"
    etag = s3.head_object(Bucket="adapters", Key="team/support/adapter_model.safetensors")["ETag"].strip('"')
    assert f"adapter_model.safetensors={etag}" in registered.card["source_revision"]
    weights = (adapter / "adapter_model.safetensors").read_bytes()
    assert (registered.path / "adapter_model.safetensors").read_bytes() == weights
    assert [s for s in seen if s[0] == "adapter_model.safetensors"][-1][1:] == (len(weights), len(weights))
    with sqlite3.connect(registry.db_path) as db:
        row = db.execute("SELECT source_url, source_revision FROM adapters").fetchone()
    assert row == ("s3://adapters/team/support", registered.card["source_revision"])
    stored = registry.db_path.read_bytes() + b"".join(p.read_bytes() for p in registry.store.rglob("*") if p.is_file())
    assert SECRET.encode() not in stored and b"AKIATESTKEY" not in stored
    assert not fetched.folder.exists()  # the download is gone once the store holds the adapter


def test_s3_download_resumes_a_partial_file(s3, make_adapter: Callable[..., Path], tmp_path: Path) -> None:
    adapter = make_adapter()
    _upload(s3, adapter, "resumable")
    weights = (adapter / "adapter_model.safetensors").read_bytes()
    downloads = tmp_path / "downloads"
    first = fetch("s3://adapters/resumable", downloads)
    etag = (first.folder / "adapter_model.safetensors.etag").read_text()
    # As a download killed half-way leaves it: the first half in .part, under the object's ETag.
    (first.folder / "adapter_model.safetensors").unlink()
    (first.folder / "adapter_model.safetensors.part").write_bytes(weights[: len(weights) // 2])
    (first.folder / "adapter_model.safetensors.part.etag").write_text(etag)
    fetched_bytes: dict[str, list[int]] = {}

    again = fetch(
        "s3://adapters/resumable", downloads, lambda name, done, total: fetched_bytes.setdefault(name, []).append(done)
    )

    assert (again.folder / "adapter_model.safetensors").read_bytes() == weights
    assert fetched_bytes["adapter_model.safetensors"][0] > len(weights) // 2  # counted on from the half it had
    assert "adapter_config.json" not in fetched_bytes  # complete, same ETag: not fetched again
    assert not (again.folder / "adapter_model.safetensors.part").exists()


def test_s3_failures_are_typed_errors_with_a_next_step(s3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(NotFound, match="no-such-bucket"):
        fetch("s3://no-such-bucket/x", tmp_path)
    with pytest.raises(NotFound, match="adapter_config.json"):
        fetch("s3://adapters/empty-prefix", tmp_path)
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(SourceError, match="No AWS credentials") as caught:
        fetch("s3://adapters/x", tmp_path)
    assert "AWS_PROFILE" in str(caught.value)


def _hub_cache(root: Path, adapter: Path, repo: str, subfolder: str, refs: dict[str, str]) -> str:
    """Lay ``adapter`` out as huggingface_hub's cache does after a download: blobs by hash, a snapshot folder per
    commit linking to them, refs naming commits, and the tree listing the cache keeps of a complete snapshot."""
    from huggingface_hub._tree_cache import TreeCacheEntry, write_tree_cache  # the layout the hub client writes

    commit = hashlib.sha1(repo.encode()).hexdigest()
    storage = root / f"models--{repo.replace('/', '--')}"
    snapshot = storage / "snapshots" / commit / subfolder
    snapshot.mkdir(parents=True)
    (storage / "blobs").mkdir()
    tree = {}
    for path in adapter.iterdir():
        blob = storage / "blobs" / hashlib.sha256(path.read_bytes()).hexdigest()
        shutil.copy(path, blob)
        (snapshot / path.name).symlink_to(blob)
        tree[f"{subfolder}/{path.name}" if subfolder else path.name] = TreeCacheEntry(
            size=blob.stat().st_size, blob_id=blob.name
        )
    write_tree_cache(str(storage), commit, tree)
    (storage / "refs").mkdir()
    for ref in refs:
        (storage / "refs" / ref).write_text(commit)
    return commit


@pytest.fixture
def offline_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """huggingface_hub offline, on a cache of the test's own (the hub is unreachable here; its code is real)."""
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return cache


def test_hub_adapter_from_the_cache_records_the_commit(
    offline_hub: Path, make_adapter: Callable[..., Path], base_model, base_shapes, tmp_path: Path
) -> None:
    commit = _hub_cache(offline_hub, make_adapter(), "acme/adapters", "support", {"main": "", "v2": ""})
    registry = Registry(tmp_path / "home")

    for source in (
        "hf://acme/adapters/support",
        "hf://acme/adapters@v2/support",
        f"hf://acme/adapters@{commit}/support",
    ):
        fetched = fetch(source, registry.home / "downloads")
        adapter = registry.register("support", fetched.folder, base_model, base_shapes, fetched.origin)
        assert (adapter.card["source"], adapter.card["source_revision"]) == (source, commit)
    assert [a.version for a in registry.list()] == [1, 2, 3]


def test_hub_failures_say_what_to_do(offline_hub: Path, make_adapter: Callable[..., Path], tmp_path: Path) -> None:
    _hub_cache(offline_hub, make_adapter(), "acme/adapters", "support", {"main": ""})
    with pytest.raises(NotFound, match="adapter_config.json"):
        fetch("hf://acme/adapters", tmp_path)  # the adapter is in a subfolder
    with pytest.raises(Exception, match="HF_HUB_OFFLINE|cache") as caught:
        fetch("hf://acme/not-cached", tmp_path)
    assert "Traceback" not in str(caught.value)


def test_registry_from_before_sources_opens_and_keeps_its_adapters(
    make_adapter: Callable[..., Path], base_model, base_shapes, tmp_path: Path
) -> None:
    home = tmp_path / "old"
    registry = Registry(home)
    old = registry.register("legacy", make_adapter(), base_model, base_shapes)
    with sqlite3.connect(registry.db_path) as db:  # the schema as it was: no source columns, no pins
        db.execute("ALTER TABLE adapters DROP COLUMN source_url")
        db.execute("ALTER TABLE adapters DROP COLUMN source_revision")
        db.execute("DROP TABLE pins")

    reopened = Registry(home)

    assert reopened.get("legacy").sha256 == old.sha256
    reopened.verify(reopened.get("legacy"))
    assert reopened.pins() == {}
    reopened.set_pin("legacy", True)
    assert reopened.pins() == {"legacy": True}
    with sqlite3.connect(reopened.db_path) as db:
        assert db.execute("SELECT source_url FROM adapters").fetchone() == (None,)
    assert json.loads((old.path / "card.json").read_text())["source"] == str(make_adapter().resolve())
    assert set(FETCHED) >= {"adapter_config.json", "adapter_model.safetensors"}


def test_register_and_pin_from_the_command_line(s3, make_adapter: Callable[..., Path]) -> None:
    """`lorastack adapters register NAME s3://...`, then pin and unpin with no server running."""
    from typer.testing import CliRunner

    from lorastack.cli import app

    _upload(s3, make_adapter(), "cli/support")
    runner = CliRunner()

    registered = runner.invoke(app, ["adapters", "register", "support", "s3://adapters/cli/support"])
    assert registered.exit_code == 0, registered.output
    assert "support@v1 from s3://adapters/cli/support" in " ".join(registered.output.split())
    shown = runner.invoke(app, ["adapters", "show", "support"])
    assert '"source": "s3://adapters/cli/support"' in shown.output

    assert runner.invoke(app, ["adapters", "pin", "support@v1"]).exit_code == 0
    assert Registry().pins() == {"support@v1": True}
    assert runner.invoke(app, ["adapters", "unpin", "support@v1"]).exit_code == 0
    assert Registry().pins() == {"support@v1": False}
    missing = runner.invoke(app, ["adapters", "pin", "nobody"])
    assert missing.exit_code != 0 and "nobody" in str(missing.exception or missing.output)


def _tiny_model(folder: Path) -> Path:
    """What resolving a base model reads: config.json, a tokenizer file and a safetensors header (no real weights)."""
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 2}))
    (folder / "tokenizer.json").write_text("{}")
    header = json.dumps({"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}}).encode()
    (folder / "model.safetensors").write_bytes(len(header).to_bytes(8, "little") + header + bytes(16))
    return folder


def test_base_model_from_s3_is_a_local_folder_that_names_its_url(
    s3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LORASTACK_CACHE", str(tmp_path / "cache"))
    model = _tiny_model(tmp_path / "tiny-llm")
    _upload(s3, model, "models/tiny-llm")
    s3.put_object(Bucket="adapters", Key="models/tiny-llm/original/consolidated.pth", Body=b"not fetched")

    base = resolve_base_model("s3://adapters/models/tiny-llm/")

    folder = Path(base.path)
    assert (base.name, base.source) == ("tiny-llm", "s3://adapters/models/tiny-llm")
    assert base.is_local and folder.is_relative_to(tmp_path / "cache")
    fetched = {p.name for p in folder.iterdir() if p.suffix != ".etag" and not p.name.startswith(".")}
    assert fetched == {p.name for p in model.iterdir()}  # not original/ below the prefix
    assert (folder / "config.json").read_bytes() == (model / "config.json").read_bytes()
    assert base.weight_shapes() == {"w": (2, 2)}
    # Adapters trained on it record the URL, which finds this model again (registration's base check, export).
    assert base.adapter_base_name == "s3://adapters/models/tiny-llm" and base.matches(base.adapter_base_name)
    # Fetched once: a second resolve finds every file under its unchanged ETag and downloads nothing.
    before = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    assert resolve_base_model("s3://adapters/models/tiny-llm").path == base.path
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == before

    # A file the prefix no longer holds is not left behind to be loaded with the rest.
    s3.delete_object(Bucket="adapters", Key="models/tiny-llm/tokenizer.json")
    resolve_base_model("s3://adapters/models/tiny-llm")
    assert not (folder / "tokenizer.json").exists() and (folder / "config.json").is_file()
    # The processes of one run resolving it at once take turns: each finds the whole model.
    _upload(s3, model, "models/again")
    with ThreadPoolExecutor(4) as pool:
        paths = set(pool.map(lambda _: resolve_base_model("s3://adapters/models/again").path, range(4)))
    assert (
        len(paths) == 1
        and (Path(paths.pop()) / "model.safetensors").read_bytes() == (model / "model.safetensors").read_bytes()
    )

    with pytest.raises(NotFound, match="holds no config.json.*model's files"):
        resolve_base_model("s3://adapters/models")
    with pytest.raises(NotFound, match="no-such-bucket"):
        resolve_base_model("s3://no-such-bucket/m")


def test_base_model_from_the_hub_cache_keeps_the_hub_id(offline_hub: Path, tmp_path: Path) -> None:
    commit = _hub_cache(offline_hub, _tiny_model(tmp_path / "tiny"), "acme/tiny-llm", "", {"main": ""})

    base = resolve_base_model("hf://acme/tiny-llm")

    assert (base.name, base.source, base.adapter_base_name) == ("acme/tiny-llm", "hf://acme/tiny-llm", "acme/tiny-llm")
    assert Path(base.path).name == commit and (Path(base.path) / "config.json").is_file()
    assert resolve_base_model("acme/tiny-llm").path == "acme/tiny-llm"  # a plain hub id is left to vLLM as before
    with pytest.raises(LorastackError, match="HF_HUB_OFFLINE|cache"):
        resolve_base_model("hf://acme/not-cached")


def test_training_config_takes_an_s3_base_model_and_refuses_a_malformed_one(
    s3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LORASTACK_CACHE", str(tmp_path / "cache"))
    _upload(s3, _tiny_model(tmp_path / "tiny-llm"), "models/tiny-llm")
    data = tmp_path / "train.jsonl"
    data.write_text(
        json.dumps({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}) + "\n"
    )

    config = load_train_config(None, ["base_model=s3://adapters/models/tiny-llm", f"data.path={data}"])

    assert config.base_model == "s3://adapters/models/tiny-llm"
    base = resolve_base_model(config.base_model)
    assert (Path(base.path) / "config.json").is_file()  # what training loads
    # A fine-tuning job on a server started with that base trains from the URL too (found in the cache).
    job = {"seed": 1, "hyperparameters": {"n_epochs": "auto", "batch_size": "auto", "learning_rate_multiplier": "auto"}}
    argv = train_arguments(job, JobSettings(), base, data, tmp_path / "run", resume=False)
    assert load_train_config(None, argv).base_model == "s3://adapters/models/tiny-llm"
    with pytest.raises(LorastackError, match="base_model: Credentials do not belong"):
        load_train_config(None, ["base_model=s3://key:secret@adapters/x", f"data.path={data}"])
    # From the command line, without a recipe too (the first KEY=VALUE stays a string: no s3:// folded to s3:/).
    from typer.testing import CliRunner

    from lorastack.cli import app

    refused = CliRunner().invoke(app, ["train", "base_model=s3://key:secret@adapters/x", f"data.path={data}"])
    assert refused.exit_code != 0 and "Credentials do not belong" in str(refused.exception or refused.output)
