"""The wheel installs one top-level package, ``xorjobs`` (issue 10, section 1).

Before, it also installed top-level ``api``, ``worker`` and ``models``: installing xorjobs beside another
distribution that ships one of those names overwrote its files, and ``celery -A worker.celery_app`` (the
Flower service) imported whatever ``./worker`` folder the current directory held.
"""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from tests.services import ServiceProcess, clean_env, free_port, wait_until

REPO = Path(__file__).resolve().parents[1]
FOREIGN_NAMES = ("api", "worker", "models")


def build_wheel(source: Path, out: Path) -> Path:
    """Build ``source`` into a wheel with the setuptools already installed (no download)."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(out),
            ".",
        ],
        cwd=source,
        check=True,
        capture_output=True,
    )
    (wheel,) = out.glob("*.whl")
    return wheel


@pytest.fixture(scope="module")
def xorjobs_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Build from a copy of the tracked tree, so a developer's build/ or .venv never leaks into it.
    tree = tmp_path_factory.mktemp("source")
    files = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, check=True, capture_output=True, text=True
    ).stdout.split("\0")
    archive = subprocess.run(
        ["git", "ls-files", "-z", "--others", "--exclude-standard"],
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split("\0")
    for name in filter(None, [*files, *archive]):
        source = REPO / name
        if not source.exists() and not source.is_symlink():
            continue  # deleted in the working tree, not yet committed
        target = tree / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_symlink():
            target.symlink_to(source.readlink())
        else:
            target.write_bytes(source.read_bytes())
    return build_wheel(tree, tmp_path_factory.mktemp("wheel"))


def foreign_wheel(tmp_path: Path) -> Path:
    """A throwaway distribution that ships top-level ``api``, ``worker`` and ``models`` packages."""
    project = tmp_path / "foreign"
    for name in FOREIGN_NAMES:
        (project / name).mkdir(parents=True)
        (project / name / "__init__.py").write_text(f"OWNER = 'foreign-{name}'\n")
    (project / "pyproject.toml").write_text(
        textwrap.dedent(
            """
            [build-system]
            requires = ["setuptools"]
            build-backend = "setuptools.build_meta"
            [project]
            name = "foreign-toplevels"
            version = "1.0"
            [tool.setuptools]
            packages = ["api", "worker", "models"]
            """
        )
    )
    return build_wheel(project, tmp_path / "foreign-wheel")


def test_the_wheel_holds_one_top_level_package(xorjobs_wheel: Path) -> None:
    with zipfile.ZipFile(xorjobs_wheel) as wheel:
        names = wheel.namelist()
    top_level = {name.split("/", 1)[0] for name in names}
    assert {name for name in top_level if not name.endswith(".dist-info")} == {"xorjobs"}, top_level
    # The three linked folders are inside it, with their data files.
    for path in ("xorjobs/api/main.py", "xorjobs/worker/tasks.py", "xorjobs/models/train.py"):
        assert path in names, path
    assert any(name.startswith("xorjobs/api/static/") for name in names)
    assert "xorjobs/api/static/swagger-ui/swagger-ui-bundle.js" in names  # /docs works from a wheel
    assert any(name.startswith("xorjobs/store/migrations/versions/") for name in names)
    assert "xorjobs/py.typed" in names and "xorjobs/client/client.py" in names  # the typed client


def test_xorjobs_installs_beside_a_distribution_with_the_same_folder_names(
    xorjobs_wheel: Path, tmp_path: Path
) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    # xorjobs' dependencies come from this test's environment, appended after the fresh venv's own
    # site-packages (a .pth line adds a path without running that folder's .pth files, so the
    # developer's editable xorjobs is not on it).
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    pip = [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps"]
    subprocess.run([*pip, str(foreign_wheel(tmp_path))], check=True, capture_output=True)
    subprocess.run([*pip, str(xorjobs_wheel)], check=True, capture_output=True)

    both_sides = textwrap.dedent(
        f"""
        import api, worker, models
        assert (api.OWNER, worker.OWNER, models.OWNER) == ('foreign-api', 'foreign-worker', 'foreign-models')
        import xorjobs, xorjobs.api.main, xorjobs.worker.runner, xorjobs.models
        assert xorjobs.models.__file__.startswith({str(site)!r}), xorjobs.models.__file__
        assert callable(xorjobs.api.main.create_app) and 'nn' in xorjobs.models.VARIANTS
        print('ok')
        """
    )
    result = subprocess.run([str(python), "-c", both_sides], capture_output=True, text=True, cwd=tmp_path)
    assert result.stdout.strip() == "ok", result.stderr

    # Removing the other distribution leaves xorjobs whole (before, it deleted models/__init__.py).
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "uninstall", "-q", "-y", "foreign-toplevels"],
        check=True,
        capture_output=True,
    )
    after = subprocess.run(
        [str(python), "-c", "from xorjobs.models import VARIANTS; print(sorted(VARIANTS))"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert after.returncode == 0 and "nn" in after.stdout, after.stderr


@pytest.fixture
def unrelated_worker_folder(tmp_path: Path) -> Iterator[Path]:
    """A directory whose ``worker/`` package would break anything that imported it."""
    folder = tmp_path / "elsewhere"
    (folder / "worker").mkdir(parents=True)
    (folder / "worker" / "__init__.py").write_text(
        "raise ImportError('the unrelated ./worker was imported')\n"
    )
    (folder / "worker" / "celery_app.py").write_text(
        "raise ImportError('the unrelated ./worker was imported')\n"
    )
    yield folder


def test_the_flower_command_ignores_a_worker_folder_in_the_current_directory(
    unrelated_worker_folder: Path, tmp_path: Path, redis_url: str
) -> None:
    import yaml

    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    command = compose["services"]["flower"]["command"]
    port = free_port()
    args = [
        str(Path(sys.executable).with_name(command[0])),
        *command[1:-1],
        f"--port={port}",
        "--address=127.0.0.1",
    ]
    assert "--port=5555" in command  # the compose command, with only the port made free here
    flower = ServiceProcess(
        args,
        clean_env(XORJOBS_BROKER_URL=redis_url, XORJOBS_HOME=str(tmp_path / "home")),
        tmp_path / "flower.log",
        cwd=unrelated_worker_folder,
    )
    try:

        def serving() -> bool:
            if flower.process.poll() is not None:
                raise AssertionError(f"flower exited {flower.process.returncode}:\n{flower.log()[-3000:]}")
            try:
                return httpx2.get(f"http://127.0.0.1:{port}/healthcheck", timeout=2).status_code == 200
            except httpx2.HTTPError:
                return False

        wait_until(serving, timeout=90, what="flower answering /healthcheck")
        assert "unrelated ./worker" not in flower.log()
    finally:
        flower.stop()


CLIENT_ONLY = """
import sys

# What `pip install xorjobs` lacks: every extra's packages (README, "Install").
BLOCKED = {"sqlalchemy", "alembic", "psycopg", "celery", "kombu", "redis", "fastapi", "starlette",
           "uvicorn", "matplotlib", "torch", "numpy"}


class BlockExtras:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, BlockExtras())
"""


def test_the_base_install_is_a_working_http_client(tmp_path: Path, redis_url: str) -> None:
    """Without any extra, the CLI submits and reports through the API; in-process commands name the extra."""
    from tests.services import XORJOBS, start_api

    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(CLIENT_ONLY)
    server_env = clean_env(
        XORJOBS_HOME=str(tmp_path / "server"),
        XORJOBS_DATABASE_URL=f"sqlite:///{tmp_path / 'server.db'}",
        XORJOBS_BROKER_URL=redis_url,
    )
    subprocess.run([XORJOBS, "db", "upgrade"], env=server_env, check=True, capture_output=True)
    api, url = start_api(server_env, tmp_path)
    client = clean_env(PYTHONPATH=str(blocker), XORJOBS_HOME=str(tmp_path / "client"), XORJOBS_API_URL=url)
    try:
        submitted = subprocess.run(
            [XORJOBS, "submit", "--variant", "nn", "--steps", "50", "--json"],
            env=client,
            capture_output=True,
            text=True,
            cwd=tmp_path,
        )
        assert submitted.returncode == 0, submitted.stderr
        sweeps = subprocess.run(
            [XORJOBS, "sweeps", "--json"], env=client, capture_output=True, text=True, cwd=tmp_path
        )
        assert sweeps.returncode == 0, sweeps.stderr
        sweep_id = json.loads(submitted.stdout)["sweep_id"]
        assert sweep_id in {sweep["sweep_id"] for sweep in json.loads(sweeps.stdout)["sweeps"]}
        # The Python client too (issue 12 §5): `from xorjobs import Client` reads XORJOBS_API_URL.
        probe = (
            "from xorjobs import Client\n"
            "client = Client()\n"
            f"status = client.sweep({sweep_id!r}).status()\n"
            "print(client.over_http, status.total, status.jobs[0].variant)\n"
        )
        in_python = subprocess.run(
            [sys.executable, "-c", probe], env=client, capture_output=True, text=True, cwd=tmp_path
        )
        assert in_python.returncode == 0, in_python.stderr
        assert in_python.stdout.split() == ["True", "1", "nn"]
    finally:
        api.stop()
    in_process = {key: value for key, value in client.items() if key != "XORJOBS_API_URL"}
    status = subprocess.run([XORJOBS, "status"], env=in_process, capture_output=True, text=True, cwd=tmp_path)
    assert status.returncode == 2, status.stderr
    assert "pip install 'xorjobs[all]'" in status.stderr and "Traceback" not in status.stderr
    assert len(status.stderr.strip().splitlines()) == 1
    embedded_client = subprocess.run(
        [sys.executable, "-c", "from xorjobs import Client; Client()"],
        env=in_process,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert embedded_client.returncode == 1
    assert "pip install 'xorjobs[all]'" in embedded_client.stderr.strip().splitlines()[-1]
