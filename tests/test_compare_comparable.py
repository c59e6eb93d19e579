"""``compare`` refuses sweeps whose groups cannot be lined up (issue 12, section 4): a different number
of steps (final costs after different training) or log interval (steps to converge on other grids)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import run_main
from xorjobs import analysis
from xorjobs.spec import SweepSpec
from xorjobs.store.schema import ensure_schema
from xorjobs.store.sweeps import create_sweep


@pytest.mark.parametrize(
    ("steps_b", "log_every_b", "problem"),
    [
        (2000, 100, "A trains 10001 steps and B 2000"),
        (10001, 50, "A logs its cost every 100 steps and B every 50"),
    ],
)
def test_compare_of_sweeps_with_other_steps_or_log_interval_exits_2_saying_which(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    steps_b: int,
    log_every_b: int,
    problem: str,
) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    ensure_schema(url)
    monkeypatch.setenv("XORJOBS_DATABASE_URL", url)
    sweep_a = create_sweep(url, SweepSpec(variants=["nn"], steps=10001, log_every=100)).sweep_id
    sweep_b = create_sweep(url, SweepSpec(variants=["nn"], steps=steps_b, log_every=log_every_b)).sweep_id
    for extra in ([], ["--json"]):
        code, out, err = run_main(["compare", sweep_a, sweep_b, *extra], monkeypatch, capsys)
        assert code == 2 and out == ""
        lines = err.strip().splitlines()
        assert len(lines) == 1 and problem in lines[0] and "--steps and --log-every" in lines[0], err
    same = create_sweep(url, SweepSpec(variants=["nn"], seeds=[1], steps=10001, log_every=100)).sweep_id
    code, out, _ = run_main(["compare", sweep_a, same, "--json"], monkeypatch, capsys)
    assert code == 0 and json.loads(out)["sweep_b"] == same


def test_incomparable_names_steps_before_the_log_interval() -> None:
    spec = {"steps": 100, "log_every": 10}
    assert analysis.incomparable(spec, dict(spec)) is None
    assert "trains" in str(analysis.incomparable(spec, {"steps": 200, "log_every": 20}))
    assert "logs" in str(analysis.incomparable(spec, {"steps": 100, "log_every": 20}))
