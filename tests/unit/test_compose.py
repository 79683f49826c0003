"""compose.yaml and the Dockerfile: valid Compose, flags vLLM accepts, and the deployment's safety properties.

No Docker engine runs in CI, so the files are checked the way Compose and vLLM read them: compose.yaml is
interpolated like Compose does (``${VAR:-default}``, ``${VAR:?message}``, ...), validated against the Compose
Specification's JSON schema, and the vllm service's command is parsed by vLLM's own ``vllm serve`` parser.
The installed vLLM (the CPU build of the lock file) is newer than the image compose.yaml pins; the flags used
there are long-standing ones, so a flag that this parser refuses is a real error.

``tests/data/compose-spec.json`` is the Compose Specification schema, vendored unchanged from
https://github.com/compose-spec/compose-spec, file ``schema/compose-spec.json`` at commit
b2835e8acc1e42e7aecbc27a9bc4a1fc66ef21ba (Apache License 2.0, Copyright the Compose Specification authors).
Refresh it deliberately, from the same path, when compose.yaml starts using newer Compose features.
"""

from __future__ import annotations

import ast
import importlib.metadata
import json
import re
import shlex
import sys
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "compose.yaml"
DOCKERFILE = ROOT / "Dockerfile"
SCHEMA_FILE = ROOT / "tests" / "data" / "compose-spec.json"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())

# The environment `docker compose up` needs: the two keys compose.yaml requires, nothing else.
REQUIRED_ENV = {"LORASTACK_API_KEY": "test-inference-key", "LORASTACK_ADMIN_KEY": "test-admin-key"}
STORE = "lorastack-data"  # the named volume holding the registry and the adapter store


class MissingVariable(Exception):
    """A ``${VAR:?message}`` (or ``${VAR?message}``) whose variable is missing: Compose refuses to start."""


_VARIABLE = re.compile(r"\$(?:(?P<escaped>\$)|\{(?P<braced>[^}]*)\}|(?P<named>[A-Za-z_][A-Za-z0-9_]*))")
_BRACED = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>.*))?$", re.DOTALL)


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """``value`` (a parsed Compose file or any part of it) with variables substituted in every string value.

    The Compose Specification's rules: ``$$`` is a literal ``$``; ``${VAR}`` and ``$VAR`` are the value or
    "" when unset; ``${VAR:-default}`` / ``${VAR-default}`` give ``default`` when VAR is unset or empty /
    unset; ``${VAR:?message}`` / ``${VAR?message}`` refuse to go on when VAR is unset or empty / unset;
    ``${VAR:+other}`` / ``${VAR+other}`` give ``other`` when VAR is set and non-empty / set. Keys are left
    alone, as Compose leaves them. Nested expressions are not supported (compose.yaml uses none).
    """
    if isinstance(value, dict):
        return {key: interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env) for item in value]
    if isinstance(value, str):
        return _VARIABLE.sub(lambda match: _substitute(match, env), value)
    return value


def _substitute(match: re.Match, env: dict[str, str]) -> str:
    if match["escaped"]:
        return "$"
    if match["named"]:
        return env.get(match["named"], "")
    expression = _BRACED.match(match["braced"])
    assert expression, f"not a Compose variable expression: {match[0]!r}"
    name, op, arg = expression["name"], expression["op"], expression["arg"]
    assert "$" not in (arg or ""), f"nested expressions are not supported here: {match[0]!r}"
    present = name in env and (env[name] != "" or not (op or "").startswith(":"))
    if op is None:
        return env.get(name, "")
    if op.endswith("-"):
        return env[name] if present else arg
    if op.endswith("?"):
        if not present:
            raise MissingVariable(f"required variable {name} is missing a value: {arg}")
        return env[name]
    return arg if present else ""  # the + forms


def compose(env: dict[str, str] | None = None) -> dict:
    """compose.yaml as `docker compose` sees it with ``REQUIRED_ENV`` plus ``env`` in the environment."""
    return interpolate(raw_compose(), {**REQUIRED_ENV, **(env or {})})


def raw_compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def _duration_seconds(text: str) -> float:
    """A Compose duration ("600s", "10m", "1m30s") in seconds."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", text)
    assert parts and "".join(n + u for n, u in parts) == text, f"not a Compose duration: {text!r}"
    return sum(float(number) * units[unit] for number, unit in parts)


def _mounts(service: dict) -> dict[str, dict]:
    """A service's volume mounts by target, in the long syntax."""
    mounts = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, str):  # short syntax: source:target[:mode]
            source, target, *mode = volume.split(":")
            volume = {"type": "volume", "source": source, "target": target, "read_only": mode == ["ro"]}
        mounts[volume["target"]] = volume
    return mounts


def _option(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


# --- the interpolation helper itself: the checks below are only as good as it is ---


def test_interpolation_follows_the_compose_rules() -> None:
    env = {"SET": "x", "EMPTY": ""}
    cases = {
        "${SET}": "x", "$SET": "x", "${UNSET}": "", "$$SET": "$SET", "a-${SET}-b": "a-x-b",
        "${SET:-d}": "x", "${EMPTY:-d}": "d", "${UNSET:-d}": "d", "${EMPTY-d}": "", "${UNSET-d}": "d",
        "${SET:+alt}": "alt", "${EMPTY:+alt}": "", "${EMPTY+alt}": "alt", "${UNSET+alt}": "",
        "${SET:?msg}": "x", "${EMPTY?msg}": "",
        "${UNSET:-127.0.0.1}:9000:9000": "127.0.0.1:9000:9000",
    }  # fmt: skip
    assert {text: interpolate(text, env) for text in cases} == cases
    assert interpolate({"k": ["${SET}", 1, None, True]}, env) == {"k": ["x", 1, None, True]}
    for text in ("${UNSET:?msg}", "${EMPTY:?msg}", "${UNSET?msg}"):
        with pytest.raises(MissingVariable, match="msg"):
            interpolate(text, env)


# --- Compose: the schema ---


def test_the_vendored_schema_is_a_valid_json_schema() -> None:
    schema = json.loads(SCHEMA_FILE.read_text())
    assert schema["title"] == "Compose Specification"
    jsonschema.validators.validator_for(schema).check_schema(schema)


@pytest.mark.parametrize(
    "env",
    [{}, {"LORASTACK_BIND": "0.0.0.0", "GPU_COUNT": "all", "TP": "2", "HF_TOKEN": "hf_x"}],
    ids=["defaults", "overrides"],
)
def test_compose_file_is_valid_compose(env: dict[str, str]) -> None:
    schema = json.loads(SCHEMA_FILE.read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(compose(env))]
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize("key", sorted(REQUIRED_ENV))
@pytest.mark.parametrize("value", [None, ""], ids=["unset", "empty"])
def test_compose_refuses_to_start_without_a_key(key: str, value: str | None) -> None:
    env = {k: v for k, v in REQUIRED_ENV.items() if k != key}
    if value is not None:
        env[key] = value
    with pytest.raises(MissingVariable, match=key):
        interpolate(raw_compose(), env)


# --- the vllm service: flags vLLM accepts ---


@pytest.fixture(scope="module")
def vllm_serve():
    """A function parsing arguments as the image's entrypoint (`vllm serve`) does, with vLLM's own parser."""
    from vllm.entrypoints.cli.serve import ServeSubcommand
    from vllm.entrypoints.launchers.cli_args import validate_parsed_serve_args
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    # As vllm.entrypoints.cli.main builds it: `vllm` with the `serve` sub-command (built by make_arg_parser).
    parser = FlexibleArgumentParser(prog="vllm")
    ServeSubcommand().subparser_init(parser.add_subparsers(dest="subparser"))

    def parse(command: list[str]):
        args = parser.parse_args(["serve", *command])
        validate_parsed_serve_args(args)
        return args

    return parse


def test_vllm_image_is_the_version_of_the_cuda_extra() -> None:
    """compose.yaml's vLLM and `pip install 'lorastack[cuda]'` are the same vLLM (the one that ran on the GPU)."""
    image = compose(REQUIRED_ENV)["services"]["vllm"]["image"]
    (pin,) = [Requirement(r) for r in PYPROJECT["project"]["optional-dependencies"]["cuda"] if r.startswith("vllm")]
    (spec,) = pin.specifier
    assert spec.operator == "==" and image == f"vllm/vllm-openai:v{spec.version}", (image, str(pin))


def test_vllm_image_is_pinned_and_its_entrypoint_takes_the_model_first() -> None:
    """The vllm-openai image runs ``ENTRYPOINT ["vllm", "serve"]`` (vLLM's docker/Dockerfile), not the older
    ``python3 -m vllm.entrypoints.openai.api_server``; with `vllm serve` the model is positional and
    ``--model`` is deprecated."""
    vllm = raw_compose()["services"]["vllm"]
    assert re.fullmatch(r"vllm/vllm-openai:v\d+\.\d+\.\d+", vllm["image"]), vllm["image"]
    assert "entrypoint" not in vllm  # the image's: `vllm serve`, so the command is only its arguments
    assert not vllm["command"][0].startswith("-"), "`vllm serve` takes the model as its first, positional argument"


def test_vllm_accepts_the_vllm_service_command(vllm_serve) -> None:
    args = vllm_serve(compose()["services"]["vllm"]["command"])
    assert args.model_tag == "Qwen/Qwen2.5-7B-Instruct"  # `vllm serve` serves model_tag over --model
    assert args.enable_lora is True
    assert (args.max_lora_rank, args.max_loras, args.max_cpu_loras, args.tensor_parallel_size) == (64, 8, 32, 1)
    assert (args.host, args.port) == ("0.0.0.0", 8000)
    assert args.enable_auto_tool_choice is True and args.tool_call_parser == "hermes"

    from vllm.tool_parsers import ToolParserManager

    assert "hermes" in ToolParserManager.list_registered()


def test_the_environment_reaches_vllm_flags(vllm_serve) -> None:
    env = {"BASE_MODEL": "meta-llama/Llama-3.1-8B-Instruct", "MAX_LORA_RANK": "128", "MAX_LORAS": "8", "TP": "2"}
    args = vllm_serve(compose({**env, "TOOL_CALL_PARSER": "llama3_json"})["services"]["vllm"]["command"])
    assert args.model_tag == "meta-llama/Llama-3.1-8B-Instruct"
    assert (args.max_lora_rank, args.max_loras, args.tensor_parallel_size) == (128, 8, 2)
    assert args.tool_call_parser == "llama3_json"


def test_vllm_refuses_a_rank_it_does_not_support(vllm_serve) -> None:
    """The parser check has teeth: a MAX_LORA_RANK vLLM does not offer stops `vllm serve` at once."""
    with pytest.raises(SystemExit):
        vllm_serve(compose({"MAX_LORA_RANK": "63"})["services"]["vllm"]["command"])


def test_vllm_allows_runtime_lora_updates(monkeypatch: pytest.MonkeyPatch) -> None:
    from vllm.envs import environment_variables

    value = compose()["services"]["vllm"]["environment"]["VLLM_ALLOW_RUNTIME_LORA_UPDATING"]
    monkeypatch.setenv("VLLM_ALLOW_RUNTIME_LORA_UPDATING", value)
    assert environment_variables["VLLM_ALLOW_RUNTIME_LORA_UPDATING"]() is True  # read as vLLM reads it


# --- wiring and safety ---


def test_only_the_front_door_is_published_and_only_on_localhost_by_default() -> None:
    services = compose()["services"]
    assert "ports" not in services["vllm"]
    assert services["lorastack"]["ports"] == ["127.0.0.1:9000:9000"]
    assert compose({"LORASTACK_BIND": "0.0.0.0"})["services"]["lorastack"]["ports"] == ["0.0.0.0:9000:9000"]


def test_keys_and_tokens_come_from_the_environment() -> None:
    raw = raw_compose()["services"]
    for key, message in (("LORASTACK_API_KEY", "inference"), ("LORASTACK_ADMIN_KEY", "admin")):
        assert re.fullmatch(rf"\$\{{{key}:\?[^}}]*{message}[^}}]*\}}", raw["lorastack"]["environment"][key])
    for service in raw.values():
        token = service["environment"].get("HF_TOKEN")
        assert token is None or token.startswith("${HF_TOKEN"), token
    text = COMPOSE_FILE.read_text()
    assert "lsk-" not in text and "hf_" not in text  # no literal lorastack or Hugging Face token


def test_the_adapter_store_is_at_the_same_path_in_both_and_read_only_in_vllm() -> None:
    config = compose()
    vllm, lorastack = config["services"]["vllm"], config["services"]["lorastack"]
    home = lorastack["environment"]["LORASTACK_HOME"]
    store_in_lorastack, store_in_vllm = _mounts(lorastack)[home], _mounts(vllm)[home]
    assert store_in_lorastack["source"] == store_in_vllm["source"] == STORE
    assert store_in_vllm["read_only"] is True
    assert not store_in_lorastack.get("read_only")
    assert {STORE, "hf-cache"} <= set(config["volumes"])
    assert _mounts(vllm)["/root/.cache/huggingface"]["source"] == "hf-cache"


def test_both_services_have_healthchecks_and_the_front_door_waits_for_vllm() -> None:
    services = compose()["services"]
    for name, port in (("vllm", 8000), ("lorastack", 9000)):
        check = services[name]["healthcheck"]
        assert check["test"][0] == "CMD" and f"http://localhost:{port}/health" in " ".join(check["test"]), name
    assert _duration_seconds(services["vllm"]["healthcheck"]["start_period"]) >= 300  # model download and load
    assert services["lorastack"]["depends_on"] == {"vllm": {"condition": "service_healthy"}}
    assert services["lorastack"]["restart"] == "unless-stopped"


def test_vllm_reserves_nvidia_gpus() -> None:
    vllm = compose()["services"]["vllm"]
    (device,) = vllm["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    assert device["count"] == "1"
    (device,) = compose({"GPU_COUNT": "2"})["services"]["vllm"]["deploy"]["resources"]["reservations"]["devices"]
    assert device["count"] == "2"
    assert vllm["ipc"] == "host"  # PyTorch shares tensors between processes through /dev/shm


@pytest.mark.parametrize(
    "env",
    [{}, {"BASE_MODEL": "meta-llama/Llama-3.1-8B-Instruct", "MAX_LORA_RANK": "128", "TOOL_CALL_PARSER": "llama3_json"}],
    ids=["defaults", "overrides"],
)
def test_the_front_door_and_vllm_agree(env: dict[str, str]) -> None:
    """lorastack checks adapters against the model and rank vLLM serves, and calls vLLM where it listens."""
    services = compose(env)["services"]
    vllm_args, command = services["vllm"]["command"], services["lorastack"]["command"]
    assert command[:2] == ["lorastack", "serve"]
    assert _option(command, "--vllm-url") == f"http://vllm:{_option(vllm_args, '--port')}"
    assert _option(command, "--base-model") == vllm_args[0]
    for flag in ("--max-lora-rank", "--max-loras", "--tool-call-parser"):
        assert _option(command, flag) == _option(vllm_args, flag), flag
    assert _option(command, "--host") == "0.0.0.0"
    port = _option(command, "--port")
    assert services["lorastack"]["ports"][0].endswith(f":{port}")
    assert f"http://localhost:{port}/health" in " ".join(services["lorastack"]["healthcheck"]["test"])


def test_lorastack_serve_accepts_the_front_door_command() -> None:
    from typer.main import get_command

    from lorastack.cli import app
    from lorastack.options import config_values
    from lorastack.serve.config import ServeConfig

    serve = get_command(app).commands["serve"]
    params = serve.make_context("serve", compose()["services"]["lorastack"]["command"][2:]).params
    config = ServeConfig(**config_values(**params))  # runs its validators too
    assert config.vllm_url == "http://vllm:8000" and config.base_model == "Qwen/Qwen2.5-7B-Instruct"
    assert (config.host, config.port, config.max_lora_rank, config.max_loras) == ("0.0.0.0", 9000, 64, 8)
    assert config.tool_call_parser == "hermes"


# --- the Dockerfile ---


def _instructions() -> list[tuple[str, str]]:
    """The Dockerfile's instructions as (INSTRUCTION, arguments), continuation lines joined, comments dropped."""
    lines = [line for line in DOCKERFILE.read_text().splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    return [
        (parts[0].upper(), parts[1].strip() if len(parts) > 1 else "")
        for parts in (line.strip().split(None, 1) for line in joined.splitlines() if line.strip())
    ]


def _pip_installs() -> list[str]:
    """What the Dockerfile's `pip install` commands install (the arguments that are not options)."""
    installs = []
    for op, args in _instructions():
        for command in args.split("&&") if op == "RUN" else []:
            words = shlex.split(command)
            if words[:2] == ["pip", "install"]:
                installs += [word for word in words[2:] if not word.startswith("-")]
    return installs


def test_dockerfile_installs_the_project_without_vllm() -> None:
    instructions = _instructions()
    assert instructions[0] == ("FROM", "python:3.11-slim")
    copied = " ".join(args for op, args in instructions if op == "COPY")
    for package in set(PYPROJECT["tool"]["setuptools"]["package-dir"].values()):
        assert re.search(rf"(^|\s){package}(\s|$)", copied), f"the Dockerfile does not copy {package}"
    assert "pyproject.toml" in copied and "README.md" in copied
    installs = _pip_installs()
    assert "." in installs  # the project itself, with its base dependencies and no extras
    assert not [i for i in installs if re.match(r"(vllm|torch)\b|\.\[", i)], "the front door needs no vLLM, no extras"


def test_the_image_installs_what_the_packages_import() -> None:
    """Every third-party module imported at the top of a module of the image's packages is installed in it.

    The local venv has vLLM, whose dependencies hide a missing one (FastAPI and uvicorn arrive with it); the
    image has only pyproject.toml's base dependencies, their dependencies, and what the Dockerfile names.
    """
    folders = sorted(set(PYPROJECT["tool"]["setuptools"]["package-dir"].values()))
    installed = _requirement_closure(PYPROJECT["project"]["dependencies"] + [i for i in _pip_installs() if i != "."])
    providers = importlib.metadata.packages_distributions()
    missing = {}
    for folder in folders:
        for module in sorted((ROOT / folder).rglob("*.py")):
            for name in _top_level_imports(module):
                if name in sys.stdlib_module_names or name == "lorastack" or name == "__future__":
                    continue
                if not {_canonical(d) for d in providers.get(name, [])} & installed:
                    missing.setdefault(name, str(module.relative_to(ROOT)))
    assert not missing, f"imported but not installed in the image (module: first importer): {missing}"


def _top_level_imports(module: Path) -> set[str]:
    names = set()
    for node in ast.parse(module.read_text()).body:  # function-level imports are optional features
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_closure(requirements: list[str]) -> set[str]:
    """Distributions pip installs for ``requirements``, read from the installed packages' metadata."""
    seen: set[str] = set()
    pending = [Requirement(r) for r in requirements]
    while pending:
        requirement = pending.pop()
        name = _canonical(requirement.name)
        if name in seen or (requirement.marker and not requirement.marker.evaluate({"extra": ""})):
            continue
        seen.add(name)
        pending += [Requirement(r) for r in importlib.metadata.requires(requirement.name) or []]
    return seen


def test_dockerfile_runs_as_a_non_root_user_and_serves_what_compose_runs() -> None:
    instructions = _instructions()
    ops = [op for op, _ in instructions]
    last_user = len(ops) - 1 - ops[::-1].index("USER")
    assert instructions[last_user][1] not in ("root", "0", "0:0")
    assert "RUN" not in ops[last_user:], "nothing runs as root after USER"
    assert ("EXPOSE", "9000") in instructions
    cmd = json.loads(dict(instructions)["CMD"])
    assert cmd == compose()["services"]["lorastack"]["command"]
    assert compose()["services"]["lorastack"]["build"] == "."


def test_dockerignore_keeps_local_state_out_of_the_image() -> None:
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".git", ".venv", "runs", "data", ".env"} <= ignored
