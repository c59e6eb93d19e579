"""Cost-curve plots (issue 5): the PNGs are valid and 800 × 500, and what they draw is the store's data.

The figures are read back before they are saved (``Service.sweep_figure`` / ``job_figure`` return the
matplotlib Figure that ``sweep_plot`` / ``job_plot`` render), so the checks are on the plotted numbers,
not on pixels.
"""

from __future__ import annotations

import struct
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from matplotlib.lines import Line2D

from tests.helpers import KNOWN_SWEEP, TOKEN, run_main, write_known_sweep
from xorjobs import plots
from xorjobs.api.main import create_app
from xorjobs.service import Service
from xorjobs.settings import Settings
from xorjobs.store import queries

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def xs(line: Line2D) -> list[float]:
    return [float(value) for value in np.asarray(line.get_xdata())]


def ys(line: Line2D) -> list[float]:
    return [float(value) for value in np.asarray(line.get_ydata())]


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from the PNG's IHDR chunk (which must come first)."""
    assert data[:8] == PNG_SIGNATURE, "not a PNG"
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR" and length == 13
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def decodes(data: bytes) -> bool:
    """matplotlib's own PNG reader (Pillow) decodes it in full."""
    import io

    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        image.load()
        return image.size == png_size(data)


@pytest.fixture
def known(tmp_path: Path) -> tuple[Service, str]:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    return Service(Settings(database_url=url)), write_known_sweep(url)


def test_the_sweep_plot_is_a_valid_800_by_500_png(known: tuple[Service, str]) -> None:
    service, sweep_id = known
    png = service.sweep_plot(sweep_id, ["variant", "lr"], threshold=0.05)
    assert png_size(png) == (800, 500) and decodes(png)


def test_the_plotted_medians_and_bands_are_the_stored_costs(known: tuple[Service, str]) -> None:
    service, sweep_id = known
    figure = service.sweep_figure(sweep_id, ["variant", "lr"], threshold=0.05)
    axes = figure.axes[0]
    assert axes.get_yscale() == "log" and axes.get_xlabel() == "step"
    lines = {line.get_label(): line for line in axes.get_lines()}
    # The legend counts the jobs with costs: each lr 0.5 group has one job (queued, cancelled) without.
    assert set(lines) == {
        "variant=nn, lr=1.0 (3 jobs)",
        "variant=nn, lr=0.5 (2 jobs)",
        "variant=backprop, lr=1.0 (3 jobs)",
        "variant=backprop, lr=0.5 (2 jobs)",
        "threshold 0.05",
    }
    # backprop, lr 1 (three seeds): medians of (0.6, 0.8, 0.7), (0.02, 0.04, 0.2), (0.001, 0.002, 0.006).
    backprop = lines["variant=backprop, lr=1.0 (3 jobs)"]
    assert xs(backprop) == [0, 100, 200]
    assert ys(backprop) == pytest.approx([0.7, 0.04, 0.002])
    # nn, lr 1: the NaN costs of seed 3 are left out of steps 100 and 200 (medians of two values).
    nn = lines["variant=nn, lr=1.0 (3 jobs)"]
    assert ys(nn) == pytest.approx([0.7, (0.04 + 0.3) / 2, (0.01 + 0.03) / 2])
    # nn, lr 0.5: the failed job logged step 0 only, so step 0 has two values and the others one.
    assert ys(lines["variant=nn, lr=0.5 (2 jobs)"]) == pytest.approx([0.7, 0.6, 0.5])
    # The interquartile band of backprop lr 1 at step 100: 25th and 75th percentile of 0.02, 0.04, 0.2.
    # Bands are drawn in the groups' order, as the lines are: backprop lr 1 is the third group.
    band = axes.collections[2]
    vertices = np.asarray(band.get_paths()[0].vertices).tolist()
    at_100 = sorted({round(y, 12) for x, y in vertices if x == 100})
    assert at_100 == pytest.approx([0.03, 0.12])


def test_the_median_curve_follows_the_store_when_a_cost_changes(known: tuple[Service, str]) -> None:
    service, sweep_id = known
    jobs = queries.sweep_status(service.url, sweep_id)["jobs"]
    costs = queries.costs_by_job(service.url, sweep_id)
    one = next(job for job in jobs if (job["variant"], job["seed"], job["lr"]) == ("backprop", 1, 1.0))
    costs[one["id"]] = [[0, 0.6], [100, 0.5], [200, 0.4]]
    figure = plots.sweep_figure(sweep_id, jobs, costs, ["variant"])
    lines = {line.get_label(): line for line in figure.axes[0].get_lines()}
    # backprop (both lrs; the cancelled job has no costs, so 5 are counted): step 200 holds 0.4, 0.002,
    # 0.006, 0.2, 0.04.
    assert ys(lines["variant=backprop (5 jobs)"])[2] == pytest.approx(0.04)


def test_the_job_plot_is_the_jobs_curve_without_its_non_finite_points(known: tuple[Service, str]) -> None:
    service, sweep_id = known
    jobs = queries.sweep_status(service.url, sweep_id)["jobs"]
    for key in (("backprop", 2, 0.5), ("nn", 1, 1.0)):
        job = next(job for job in jobs if (job["variant"], job["seed"], job["lr"]) == key)
        line = service.job_figure(job["id"]).axes[0].get_lines()[0]
        planned = KNOWN_SWEEP[key][1]
        assert isinstance(planned, list)
        finite = [(step, cost) for step, cost in planned if cost < float("inf")]  # NaN and inf fail `<`
        assert xs(line) == [step for step, _ in finite]
        assert ys(line) == pytest.approx([cost for _, cost in finite])
        png = service.job_plot(job["id"])
        assert png_size(png) == (800, 500) and decodes(png)


def test_a_sweep_with_no_costs_yet_still_draws(tmp_path: Path) -> None:
    from xorjobs.spec import SweepSpec
    from xorjobs.store.schema import ensure_schema
    from xorjobs.store.sweeps import create_sweep

    url = f"sqlite:///{tmp_path / 'store.db'}"
    ensure_schema(url)
    sweep_id = create_sweep(url, SweepSpec(variants=["nn"], steps=10)).sweep_id
    assert png_size(Service(Settings(database_url=url)).sweep_plot(sweep_id, ["variant"])) == (800, 500)


@pytest.fixture
def api_client(known: tuple[Service, str]) -> Iterator[TestClient]:
    service, _ = known
    with TestClient(create_app(Settings(database_url=service.url, api_token=TOKEN))) as client:
        yield client


def test_the_api_serves_the_same_pngs(known: tuple[Service, str], api_client: TestClient) -> None:
    service, sweep_id = known
    headers = {"Authorization": f"Bearer {TOKEN}"}
    response = api_client.get(f"/sweeps/{sweep_id}/plot.png?by=variant,lr&threshold=0.05", headers=headers)
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    # Asked again each time, answered 304 while the sweep is unchanged (tests/test_conditional.py).
    assert response.headers["cache-control"] == "private, no-cache" and response.headers["etag"]
    assert response.content == service.sweep_plot(sweep_id, ["variant", "lr"], 0.05)
    job_id = queries.sweep_status(service.url, sweep_id)["jobs"][0]["id"]
    job_png = api_client.get(f"/jobs/{job_id}/plot.png", headers=headers)
    assert job_png.status_code == 200 and job_png.content == service.job_plot(job_id)
    assert api_client.get("/sweeps/sw-nope/plot.png", headers=headers).status_code == 404
    assert api_client.get("/jobs/job-nope/plot.png", headers=headers).status_code == 404
    assert api_client.get(f"/sweeps/{sweep_id}/plot.png?by=colour", headers=headers).status_code == 422
    assert api_client.get(f"/sweeps/{sweep_id}/plot.png").status_code == 401


def test_the_plot_command_writes_the_png(
    known: tuple[Service, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    service, sweep_id = known
    monkeypatch.setenv("XORJOBS_DATABASE_URL", service.url)
    target = tmp_path / "curves.png"
    code, _, err = run_main(["plot", sweep_id, "-o", str(target), "--by", "variant"], monkeypatch, capsys)
    assert code == 0 and f"wrote {target}" in err.replace("\n", "")
    assert target.read_bytes() == service.sweep_plot(sweep_id, ["variant"], None)
    job_id = queries.sweep_status(service.url, sweep_id)["jobs"][0]["id"]
    code, _, _ = run_main(["plot", "--job", job_id, "-o", str(tmp_path / "job.png")], monkeypatch, capsys)
    assert code == 0 and png_size((tmp_path / "job.png").read_bytes()) == (800, 500)
    code, _, err = run_main(["plot", sweep_id, "--by", "colour", "-o", str(target)], monkeypatch, capsys)
    assert code == 2 and "--by" in err
    code, _, err = run_main(["plot", "--job", "job-nope", "-o", str(target)], monkeypatch, capsys)
    assert code == 3


def test_the_cli_does_not_import_matplotlib_for_other_commands(known: tuple[Service, str]) -> None:
    import subprocess

    service, sweep_id = known
    code = (
        "import sys; from xorjobs.cli import app; from xorjobs.service import Service; "
        "from xorjobs.settings import Settings; "
        f"Service(Settings(database_url={service.url!r})).summary({sweep_id!r}, ['variant']); "
        "assert 'matplotlib' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_a_curve_of_one_logged_step_is_drawn_as_a_dot() -> None:
    # --log-every = --steps (or a job stopped at step 0) logs one cost: a plain line through it drew nothing.
    job = {
        "id": "job-1",
        "variant": "nn",
        "seed": 1,
        "lr": 1.0,
        "state": "succeeded",
        "steps": 10,
        "log_every": 10,
    }
    job |= {"final_cost": 0.69, "accuracy": 0.5, "steps_trained": 1, "stopped_at_step": 0}
    sweep_line = plots.sweep_figure("sw-1", [job], {"job-1": [(0, 0.7)]}, ["variant"]).axes[0].get_lines()[0]
    job_line = plots.job_figure(job, [(0, 0.7)]).axes[0].get_lines()[0]
    assert [line.get_marker() for line in (sweep_line, job_line)] == ["o", "o"]
    assert xs(sweep_line) == xs(job_line) == [0.0]
