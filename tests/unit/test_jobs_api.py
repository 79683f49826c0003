"""The files and fine-tuning jobs API without a model server: the official ``openai`` client against the front door's
app in-process (its worker not started, so jobs stay queued), the real registry database and files folder.

Training, serving the result, cancel mid-run and resume run against real vLLM in tests/integration/test_jobs.py.
"""

from __future__ import annotations

import hashlib
import io
import json
import sqlite3
import threading
from pathlib import Path

import openai
import pytest
from fastapi.testclient import TestClient

from lorastack.cli import _data_check
from lorastack.errors import AdapterRejected
from lorastack.serve.compatibility import check_alias
from lorastack.serve.front_door import FrontDoor
from lorastack.serve.jobs import JobSettings
from lorastack.serve.jobs.progress import parse_step
from lorastack.serve.jobs.runner import DEFAULT_LEARNING_RATE, train_arguments
from lorastack.serve.keys import KeyStore, Role
from lorastack.serve.registry import Registry
from lorastack.serve.state import ServerState

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "tool_chat.jsonl"
RECIPE = ROOT / "tests" / "data" / "jobs_tiny.yaml"


@pytest.fixture
def door(base_model) -> FrontDoor:
    state = ServerState(
        "http://127.0.0.1:9", 0, base_model.name, base_model.path, base_model.source, "cpu", 16, 4,
        upstream_url="http://127.0.0.1:9",  # nothing listens there: these tests never reach vLLM
    )  # fmt: skip
    return FrontDoor(state, Registry(), jobs=JobSettings(RECIPE, 64 * 1024), data_check=_data_check)


def _client(door: FrontDoor, key: str = "unused") -> openai.OpenAI:
    http = TestClient(door.app, client=("127.0.0.1", 5000))
    return openai.OpenAI(base_url="http://testserver/v1", api_key=key, http_client=http, max_retries=0)


def _upload(client: openai.OpenAI, content: bytes, name: str = "train.jsonl"):
    return client.files.create(file=(name, io.BytesIO(content)), purpose="fine-tune")


def test_upload_checks_stores_and_pages_files(door: FrontDoor) -> None:
    client = _client(door)
    content = DATA.read_bytes()
    made = [_upload(client, content, f"part{i}.jsonl") for i in range(3)]
    first = made[0]
    assert first.status == "processed" and first.bytes == len(content) and first.filename == "part0.jsonl"
    row = door.jobs.store.file(first.id)
    assert row["sha256"] == hashlib.sha256(content).hexdigest()
    assert client.files.content(first.id).read() == content
    assert client.files.retrieve(first.id).id == first.id

    page = client.files.list(limit=2)
    assert [f.id for f in page.data] == [made[2].id, made[1].id] and page.has_more
    assert [f.id for f in client.files.list(limit=2)] == [m.id for m in reversed(made)]  # auto-paging with after=
    assert [f.id for f in client.files.list(limit=2, order="asc")] == [m.id for m in made]

    assert client.files.delete(first.id).deleted
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(first.id)
    assert not door.jobs.files.path(row).exists()


def test_malformed_file_is_an_error_naming_its_line(door: FrontDoor) -> None:
    client = _client(door)
    bad = (
        b'{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}\n{"messages": 3}\n'
    )
    uploaded = _upload(client, bad, "bad.jsonl")
    assert uploaded.status == "error"
    assert "bad.jsonl:2" in uploaded.status_details and str(door.jobs.files.folder) not in uploaded.status_details

    job = client.fine_tuning.jobs.create(model=door.base_name, training_file=uploaded.id)
    assert job.status == "failed" and job.error.code == "invalid_training_file" and job.error.param == "training_file"
    assert "bad.jsonl:2" in job.error.message
    assert door.jobs.store.next_job() is None  # the worker never gets it


def test_uploads_refused_with_4xx(door: FrontDoor) -> None:
    client = _client(door)
    for call, status in [
        (lambda: _upload(client, b'{"a": 1}\n', "data.csv"), 400),
        (lambda: client.files.create(file=("t.jsonl", io.BytesIO(b"{}\n")), purpose="assistants"), 400),
        (lambda: _upload(client, b"", "empty.jsonl"), 400),
        (lambda: _upload(client, b"x" * (64 * 1024 + 1)), 413),
    ]:
        with pytest.raises(openai.APIStatusError) as refused:
            call()
        assert refused.value.status_code == status
        assert refused.value.body["code"] and refused.value.body["message"]
    http = TestClient(door.app, client=("127.0.0.1", 5000))
    assert http.post("/v1/files", json={"purpose": "fine-tune"}).status_code == 400  # not multipart
    two = http.post("/v1/files", files=[("file", ("a.jsonl", b"{}")), ("file", ("b.jsonl", b"{}"))])
    assert two.status_code == 400
    assert not [p for p in door.jobs.files.folder.iterdir()]  # nothing refused was kept


def test_a_file_name_never_becomes_a_path(door: FrontDoor) -> None:
    uploaded = _upload(_client(door), DATA.read_bytes(), "../../../../tmp/escape.jsonl")
    assert uploaded.filename == "escape.jsonl"
    stored = door.jobs.files.path(door.jobs.store.file(uploaded.id))
    assert stored.parent == door.jobs.files.folder.resolve() and stored.name.startswith(uploaded.id)


def test_job_create_validates_and_queues(door: FrontDoor) -> None:
    client = _client(door)
    data = _upload(client, DATA.read_bytes())
    hyper = {"n_epochs": 2, "batch_size": 2, "learning_rate_multiplier": 0.5}
    job = client.fine_tuning.jobs.create(
        model=door.base_name, training_file=data.id, suffix="tiny", seed=7, metadata={"team": "a"},
        method={"type": "supervised", "supervised": {"hyperparameters": hyper}},
    )  # fmt: skip
    assert job.status == "queued" and job.seed == 7 and job.user_provided_suffix == "tiny"
    assert job.hyperparameters.n_epochs == 2 and job.method.supervised.hyperparameters.batch_size == 2
    assert job.fine_tuned_model is None and job.metadata == {"team": "a"}
    assert client.fine_tuning.jobs.retrieve(job.id).status == "queued"
    messages = [e.message for e in client.fine_tuning.jobs.list_events(job.id)]
    assert messages == ["Files validated, moving job to queued state.", f"Validating training file: {data.id}"]
    assert client.fine_tuning.jobs.checkpoints.list(job.id).data == []
    assert door.jobs.store.next_job()["id"] == job.id

    cancelled = client.fine_tuning.jobs.cancel(job.id)
    assert cancelled.status == "cancelled" and door.jobs.store.next_job() is None
    with pytest.raises(openai.ConflictError):
        client.fine_tuning.jobs.cancel(job.id)


def test_a_job_is_answered_as_created_even_when_the_worker_starts_it_at_once(door: FrontDoor) -> None:
    store = door.jobs.store

    class EagerWorker(threading.Event):
        """A worker that starts every queued job the moment it is woken (as a fast one can)."""

        def set(self) -> None:
            for job_id in store.job_ids("queued"):
                store.update_job(job_id, ("queued",), status="running")
            super().set()

    door.jobs.runner.wake = EagerWorker()
    client = _client(door)
    job = client.fine_tuning.jobs.create(model=door.base_name, training_file=_upload(client, DATA.read_bytes()).id)
    assert job.status == "queued"  # what creating it did; the worker's start comes after
    assert client.fine_tuning.jobs.retrieve(job.id).status == "running"


def test_job_with_a_validation_file_is_recorded_and_trains_with_it(door: FrontDoor, base_model, tmp_path) -> None:
    from lorastack.finetune.config import load_train_config  # the trainer's config, as train reads it

    client = _client(door)
    data, held = _upload(client, DATA.read_bytes()), _upload(client, DATA.read_bytes(), "valid.jsonl")
    job = client.fine_tuning.jobs.create(model=door.base_name, training_file=data.id, validation_file=held.id)
    assert job.status == "queued" and job.validation_file == held.id
    assert client.fine_tuning.jobs.retrieve(job.id).validation_file == held.id
    row = door.jobs.store.next_job()
    assert row["id"] == job.id and row["validation_file"] == held.id
    with pytest.raises(openai.ConflictError):
        client.files.delete(held.id)  # the queued job still needs it

    stored = door.jobs.files.path(door.jobs.store.file(held.id))
    argv = train_arguments(row, JobSettings(RECIPE), base_model, DATA, tmp_path / "run", False, validation=stored)
    config = load_train_config(Path(argv[0]), argv[1:]).data
    assert config.eval_path == stored and config.eval_fraction == 0

    client.fine_tuning.jobs.cancel(job.id)
    assert client.files.delete(held.id).deleted  # no unfinished job uses it any more


def test_validation_file_refused_like_the_training_file(door: FrontDoor) -> None:
    client, http = _client(door), TestClient(door.app, client=("127.0.0.1", 5000))
    data = _upload(client, DATA.read_bytes())
    bad = _upload(client, b'{"messages": 3}\n', "bad.jsonl")
    results = door.jobs.files.add_results("ftjob-x", b"step\n")  # a file, but not one uploaded for fine-tuning
    for validation, status in ((bad.id, 400), ("file-nope", 404), (results["id"], 400)):
        response = http.post("/v1/fine_tuning/jobs", json={"model": door.base_name, "training_file": data.id,
                                                           "validation_file": validation})  # fmt: skip
        assert response.status_code == status, response.text
        error = response.json()["error"]
        assert error["param"] == ("validation_file" if status == 400 else None) and error["message"]
    assert "bad.jsonl:1" in http.post("/v1/fine_tuning/jobs", json={
        "model": door.base_name, "training_file": data.id, "validation_file": bad.id}).json()["error"]["message"]  # fmt: skip
    assert door.jobs.store.jobs(None, 5) == ([], False)  # nothing refused was recorded


@pytest.mark.parametrize(
    ("change", "status", "param"),
    [
        ({"training_file": "file-nope"}, 404, None),
        ({"model": "gpt-4o-mini"}, 400, "model"),
        ({"method": {"type": "dpo", "dpo": {}}}, 400, "method.type"),
        ({"method": {"type": "reinforcement"}}, 400, "method.type"),
        ({"method": {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 0}}}}, 400, None),
        ({"hyperparameters": {"n_epochs": "3"}}, 400, None),
        ({"hyperparameters": {"batch_size": 1.5}}, 400, None),
        ({"hyperparameters": {"learning_rate_multiplier": -1}}, 400, None),
        ({"hyperparameters": {"warmup": 3}}, 400, None),
        ({"suffix": "a:b"}, 400, None),
        ({"suffix": "x" * 65}, 400, None),
        ({"seed": -1}, 400, None),
        ({"metadata": {f"k{i}": "v" for i in range(17)}}, 400, None),
        ({"validation_file": "file-x"}, 404, None),
        ({"integrations": [{"type": "wandb"}]}, 400, "integrations"),
        ({"surprise": 1}, 400, None),
    ],
)
def test_bad_job_requests_are_openai_4xx(door: FrontDoor, change: dict, status: int, param: str | None) -> None:
    http = TestClient(door.app, client=("127.0.0.1", 5000))
    data = _upload(_client(door), DATA.read_bytes())
    body = {"model": door.base_name, "training_file": data.id, **change}
    response = http.post("/v1/fine_tuning/jobs", json=body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["message"] and error["code"] and error["param"] == param
    assert door.jobs.store.next_job() is None


def test_unknown_ids_and_bad_queries(door: FrontDoor) -> None:
    client, http = _client(door), TestClient(door.app, client=("127.0.0.1", 5000))
    for call in (lambda: client.fine_tuning.jobs.retrieve("ftjob-nope"), lambda: client.fine_tuning.jobs.cancel("x"),
                 lambda: client.fine_tuning.jobs.list_events("ftjob-nope"), lambda: client.files.content("file-x"),
                 lambda: client.fine_tuning.jobs.checkpoints.list("ftjob-nope"), lambda: client.files.delete("f")):  # fmt: skip
        with pytest.raises(openai.NotFoundError):
            call()
    for query in ("limit=0", "limit=101", "limit=ten", "after=ftjob-unknown"):
        assert http.get(f"/v1/fine_tuning/jobs?{query}").status_code in (400, 404), query
    assert http.get("/v1/files?order=sideways").status_code == 400


def test_job_pages_and_metadata_filter(door: FrontDoor) -> None:
    client = _client(door)
    data = _upload(client, DATA.read_bytes())
    made = [client.fine_tuning.jobs.create(model=door.base_name, training_file=data.id, metadata={"n": str(i)})
            for i in range(3)]  # fmt: skip
    page = client.fine_tuning.jobs.list(limit=2)
    assert [j.id for j in page.data] == [made[2].id, made[1].id] and page.has_more
    rest = client.fine_tuning.jobs.list(limit=2, after=page.data[-1].id)
    assert [j.id for j in rest.data] == [made[0].id] and not rest.has_more
    assert [j.id for j in client.fine_tuning.jobs.list(limit=1)] == [m.id for m in reversed(made)]
    assert [j.id for j in client.fine_tuning.jobs.list(metadata={"n": "1"})] == [made[1].id]
    with pytest.raises(openai.ConflictError):
        client.files.delete(data.id)  # queued jobs still need it


def test_files_and_jobs_need_an_admin_key_once_keys_exist(door: FrontDoor) -> None:
    _, admin = KeyStore().create(Role.admin)
    _, inference = KeyStore().create(Role.inference)
    with pytest.raises(openai.AuthenticationError):
        _upload(_client(door, inference), DATA.read_bytes())
    with pytest.raises(openai.AuthenticationError):
        _client(door, inference).fine_tuning.jobs.list()
    with pytest.raises(openai.AuthenticationError):
        _client(door).files.list()
    assert _upload(_client(door, admin), DATA.read_bytes()).status == "processed"
    remote = TestClient(door.app, client=("203.0.113.7", 5000))
    assert remote.get("/v1/fine_tuning/jobs").status_code == 401


def test_without_keys_only_this_machine(door: FrontDoor) -> None:
    remote = TestClient(door.app, client=("203.0.113.7", 5000))
    assert remote.get("/v1/files").status_code == 401
    assert TestClient(door.app, client=("127.0.0.1", 5000)).get("/v1/files").status_code == 200


def test_existing_registry_database_gains_the_tables(tmp_path: Path, make_adapter, base_model) -> None:
    """A registry.db from before jobs keeps its adapters, aliases and keys; the jobs tables are added beside."""
    registry = Registry(tmp_path / "home")
    adapter = registry.register("old", make_adapter(), base_model, base_model.weight_shapes())
    registry.set_alias("prod", adapter)
    state = ServerState("http://127.0.0.1:9", 0, base_model.name, base_model.path, base_model.source, "cpu", 16, 4)
    door = FrontDoor(state, Registry(tmp_path / "home"))
    assert door.jobs.store.jobs(None, 5) == ([], False)
    again = Registry(tmp_path / "home")
    assert [a.ref for a in again.list()] == ["old@v1"] and again.alias("prod").ref == "old@v1"
    with sqlite3.connect(again.db_path) as db:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"adapters", "aliases", "ft_files", "ft_jobs", "ft_events", "ft_checkpoints"} <= tables


def test_fine_tuned_names_are_aliases_but_never_paths() -> None:
    assert check_alias("ft:SmolLM2-135M-Instruct:tiny:ftjob-0123abcd") == "ft:SmolLM2-135M-Instruct:tiny:ftjob-0123abcd"
    assert check_alias("ft:Qwen/Qwen2.5-7B::ftjob-1")
    for bad in ("ft:../x:y:z", "ft:a:b", "FT:a:b:c", "ft:a:b:c/../d", "../prod"):
        with pytest.raises(AdapterRejected):
            check_alias(bad)


def test_progress_lines_of_the_trainer_parse() -> None:
    """The worker reads what finetune's progress formatter writes: if one changes, this fails."""
    from lorastack.finetune.progress import progress_line  # transformers: only for this test

    line = progress_line(3, 8, {"loss": 1.23456, "learning_rate": 3e-3, "tokens_per_second": 412.0}, 12.0)
    assert parse_step(line).data() == {"step": 3, "total_steps": 8, "train_loss": 1.2346}
    evaluated = parse_step(progress_line(8, 8, {"eval_loss": 0.5}, None))
    assert evaluated.valid_loss == 0.5 and evaluated.train_loss is None
    assert parse_step("Resuming from checkpoint-3.") is None


def test_hyperparameters_map_onto_a_valid_training_config(base_model, tmp_path: Path) -> None:
    from lorastack.finetune.config import TrainingSettings, load_train_config  # the trainer's config, as train reads it

    assert DEFAULT_LEARNING_RATE == TrainingSettings().learning_rate
    job = {"seed": 7, "hyperparameters": {"n_epochs": 3, "batch_size": 2, "learning_rate_multiplier": 2}}
    argv = train_arguments(job, JobSettings(RECIPE), base_model, DATA, tmp_path / "run", resume=False)
    config = load_train_config(Path(argv[0]), argv[1:])
    t = config.training
    assert (t.epochs, t.batch_size, t.seed, t.max_steps, t.logging_steps) == (3, 2, 7, -1, 1)
    assert t.learning_rate == pytest.approx(2 * 3e-3) and config.lora.r == 4  # the recipe's rate, times 2
    assert config.data.path == DATA and config.output_dir == tmp_path / "run"
    auto = {
        "seed": 1,
        "hyperparameters": {"n_epochs": "auto", "batch_size": "auto", "learning_rate_multiplier": "auto"},
    }
    argv = train_arguments(auto, JobSettings(), base_model, DATA, tmp_path / "run", resume=True)
    assert argv[-1] == "--resume"
    assert load_train_config(None, argv[:-1]).training.learning_rate == DEFAULT_LEARNING_RATE
    assert json.loads(argv[0].partition("=")[2]) == base_model.name
