"""Sweep files (issue 12 §1): YAML/TOML/JSON documents, errors naming key and line, flags beside -f,
`xorjobs spec` re-running a sweep, `run -f` end to end, and POST /sweeps with the same document."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.services import XORJOBS, clean_env
from tests.test_cli import invoke_main, run_cli
from xorjobs.api.main import create_app
from xorjobs.errors import InvalidSpec
from xorjobs.settings import Settings
from xorjobs.spec import validate_spec
from xorjobs.store.schema import upgrade
from xorjobs.sweep_file import document_of, dump_document, parse_sweep_text, spec_from_document

YAML_SWEEP = """\
# the README's example
name: lr search
variants: [nn, wide_deep]
seeds: {sample: random, count: 3}
lrs:
  sample: log_uniform
  low: 1e-3        # a number (YAML 1.1 would read "1e-3" as text)
  high: 10
  count: 4
steps: 2000
log_every: 100
sampler_seed: 42
"""
TOML_SWEEP = """\
name = "lr search"
variants = ["nn", "wide_deep"]
steps = 2000
log_every = 100
sampler_seed = 42
seeds = {sample = "random", count = 3}
[lrs]
sample = "log_uniform"
low = 1e-3
high = 10
count = 4
"""


def test_yaml_toml_and_json_documents_give_the_same_sweep() -> None:
    from_yaml = spec_from_document(parse_sweep_text(YAML_SWEEP, "sweep.yaml"))
    from_toml = spec_from_document(parse_sweep_text(TOML_SWEEP, "sweep.toml", "toml"))
    as_json = json.dumps(parse_sweep_text(YAML_SWEEP).fields)
    assert from_yaml == from_toml == spec_from_document(parse_sweep_text(as_json, "sweep.json", "json"))
    assert from_yaml.variants == ["nn", "wide_deep"] and len(from_yaml.lrs) == 4 and len(from_yaml.seeds) == 3
    assert from_yaml.job_count == 24 and from_yaml.sampler_seed == 42 and from_yaml.name == "lr search"
    # The document a stored sweep prints reads back to the same sweep.
    printed = dump_document(document_of(from_yaml.model_dump(mode="json")))
    assert spec_from_document(parse_sweep_text(printed)) == from_yaml


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("steps: 10\nlr: [0.5]\n", "lr (f.yaml line 2): not a sweep key; did you mean lrs?"),
        (
            "lrs:\n  sample: log_uniform\n  low: -1\n",
            "lrs.low (f.yaml line 3): Input should be greater than 0",
        ),
        ("seeds: [1, 2,\n  -3]\n", "seeds.2 (f.yaml line 2): Input should be greater than or equal to 0"),
        ("steps: 1_000\n", "steps (f.yaml line 1): Input should be a valid integer (got '1_000')"),
        ("stop_when_solved: yes\n", "stop_when_solved (f.yaml line 1): Input should be a valid boolean"),
        ("steps: 10\nsteps: 20\n", "steps (f.yaml line 2): given twice (first on line 1)"),
        ("steps: 50\nlog_every: 100\n", "log_every (f.yaml line 2): log_every (100) must be at most steps"),
        ("variants: [nn\n", "f.yaml line 2: not valid YAML"),
        ("- nn\n", "f.yaml: a sweep file is a mapping of keys"),
        ("seeds: {first: 5, last: 1}\n", "seeds.last (f.yaml line 1): 1 is below first (5)"),
        (
            "seeds:\n  first: 1\n  last: 10001\n",
            "seeds.last (f.yaml line 3): 1 to 10001 is 10001 seeds; at most",
        ),
        (
            "seeds: {first: -1, last: 3}\n",
            "seeds.first (f.yaml line 1): Input should be greater than or equal",
        ),
        (
            "seeds: {first: 1, last: 9223372036854775808}\n",
            "seeds.last (f.yaml line 1): Input should be less",
        ),
        ("seeds: {first: 1}\n", "seeds.last (f.yaml line 1): Field required"),
        (
            "seeds: {first: 1, last: 3, count: 2}\n",
            "seeds (f.yaml line 1): give a range {first: A, last: B} or",
        ),
        ("seeds: {}\n", "seeds (f.yaml line 1): write a list, a range {first: A, last: B} or random seeds"),
        ("seeds: {first: 1, last: 3}\nsampler_seed: 4\n", "sampler_seed (f.yaml line 2): nothing is sampled"),
    ],
)
def test_errors_name_the_key_and_its_line(text: str, error: str) -> None:
    with pytest.raises(InvalidSpec) as raised:
        spec_from_document(parse_sweep_text(text, "f.yaml"))
    assert str(raised.value).startswith(error), raised.value


@pytest.mark.parametrize(
    ("text", "kind", "error"),
    [
        # An empty document is a slip (`-f <(xorjobs spec ID)` whose command failed), never the default sweep.
        ("", "yaml", "f: the sweep file is empty"),
        ("# nothing\n\n", "yaml", "f: the sweep file is empty"),
        ("# nothing\n", "toml", "f: the sweep file is empty"),
        ("null\n", "yaml", "f: a sweep file is a mapping of keys (variants"),
        # JSON keeps the last of two equal keys; a sweep file refuses it, as YAML and TOML do.
        ('{"steps": 10, "steps": 20}', "json", "f: not valid JSON: the key 'steps' is given twice"),
        # Nested past the parsers' recursion limit: a RecursionError traceback in each format.
        ("lrs: " + "[" * 3000 + "]" * 3000, "yaml", "f: not valid YAML: nested too deeply"),
        ('{"lrs": ' + "[" * 3000 + "]" * 3000 + "}", "json", "f: not valid JSON: nested too deeply"),
        ("lrs = " + "[" * 3000 + "]" * 3000, "toml", "f: not valid TOML: nested too deeply"),
        # Aliases nest a list 9 times in 9 lines (9**9 items): the line walk and the "got" text never ended.
        (
            "k1: &k1 [1, 1, 1, 1, 1, 1, 1, 1, 1]\n"
            + "".join(f"k{n}: &k{n} [{', '.join([f'*k{n - 1}'] * 9)}]\n" for n in range(2, 9)),
            "yaml",
            "f line 2: not valid YAML: an alias (*name) is not allowed in a sweep file",
        ),
    ],
)
def test_an_empty_twice_keyed_or_too_deep_document_is_refused(text: str, kind: str, error: str) -> None:
    with pytest.raises(InvalidSpec) as raised:
        parse_sweep_text(text, "f", kind)
    assert str(raised.value).startswith(error), raised.value
    assert "NoneType" not in str(raised.value)
    assert parse_sweep_text("{}", "f").fields == {}  # every default, said on purpose


def test_a_seed_range_is_the_list_it_stands_for_and_prints_back_as_a_range() -> None:
    ranged = spec_from_document(
        parse_sweep_text("variants: [nn]\nseeds: {first: 3, last: 1002}\nsteps: 10\n")
    )
    assert ranged == validate_spec({"variants": ["nn"], "seeds": list(range(3, 1003)), "steps": 10})
    assert ranged.sampling is None and ranged.sampler_seed is None  # a notation: nothing drawn or recorded
    assert validate_spec({"seeds": {"first": 7, "last": 7}}).seeds == [7]
    assert len(validate_spec({"seeds": {"first": 1, "last": 10_000}, "variants": ["nn"]}).seeds) == 10_000
    printed = dump_document(document_of(ranged.model_dump(mode="json")))
    assert (
        "seeds: {first: 3, last: 1002}\n" in printed
        and spec_from_document(parse_sweep_text(printed)) == ranged
    )
    # Short runs, gaps and descending seeds print as lists; a sampled lr keeps its request beside a range.
    for seeds, shown in (
        ([1, 2, 3], "[1, 2, 3]"),
        ([1, 2, 3, 5], "[1, 2, 3, 5]"),
        ([4, 3, 2, 1], "[4, 3, 2, 1]"),
    ):
        assert f"seeds: {shown}\n" in dump_document(document_of(validate_spec({"seeds": seeds}).model_dump()))
    lr_request = {"sample": "uniform", "low": 0.1, "high": 2.0, "count": 2}
    both = validate_spec({"seeds": {"first": 1, "last": 4}, "lrs": lr_request, "sampler_seed": 9})
    assert document_of(both.model_dump(mode="json"))["seeds"] == {"first": 1, "last": 4}
    assert document_of(both.model_dump(mode="json"))["lrs"] == lr_request and both.seeds == [1, 2, 3, 4]


def test_a_seed_range_in_a_file_and_the_same_seeds_as_a_flag_are_one_keyed_sweep(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "sweep.yaml").write_text("variants: [nn]\nseeds: {first: 11, last: 14}\nsteps: 20\n")
    first = invoke_main(["submit", "-f", "sweep.yaml", "--key", "r", "--json"], tmp_path, monkeypatch, capsys)
    assert first.returncode == 0, first.stderr
    created = json.loads(first.stdout)
    assert [job["seed"] for job in created["jobs"]] == [11, 12, 13, 14]
    printed = invoke_main(["spec", created["sweep_id"]], tmp_path, monkeypatch, capsys).stdout
    assert "seeds: {first: 11, last: 14}\n" in printed
    (tmp_path / "again.yaml").write_text(printed)
    for args in (["-f", "again.yaml"], ["--seed", "11-14", "--variant", "nn", "--steps", "20"]):
        again = invoke_main(["submit", *args, "--key", "r", "--json"], tmp_path, monkeypatch, capsys)
        assert again.returncode == 0, again.stderr
        assert (
            not json.loads(again.stdout)["created"]
            and json.loads(again.stdout)["sweep_id"] == created["sweep_id"]
        )


def test_yaml_numbers_follow_the_flags_rule() -> None:
    document = parse_sweep_text("seeds: [010, 7]\nname: 2026-12-01\nlrs: [1e-3, .5]\n").fields
    assert document == {"seeds": [10, 7], "name": "2026-12-01", "lrs": [0.001, 0.5]}  # not octal, not a date


@pytest.mark.parametrize(
    ("content", "flags", "line"),
    [
        ("lrs: {sample: uniform, low: 2, high: 1, count: 3}\n", [], "error: lrs.high (sweep.yaml line 1): "),
        ("variants: [mlp]\n", [], "error: variants.0 (sweep.yaml line 1): "),
        ("steps: 20\n", ["--steps", "0"], "error: --steps: "),
        ("steps: 20\n", ["--lr", "uniform:1:2"], "error: --lr: "),
        (None, [], "error: sweep.yaml: cannot read the sweep file: No such file or directory"),
    ],
)
@pytest.mark.parametrize("command", ["submit", "run"])
def test_a_bad_file_or_flag_exits_2_naming_it_and_writes_nothing(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    command: str,
    content: str | None,
    flags: list[str],
    line: str,
) -> None:
    if content is not None:
        (tmp_path / "sweep.yaml").write_text(content)
    result = invoke_main([command, "-f", "sweep.yaml", *flags], tmp_path, monkeypatch, capsys)
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and result.stderr.startswith(line), result.stderr
    assert result.stdout == "" and not (tmp_path / ".xorjobs").exists()  # no store, no sweep


def test_flags_beside_the_file_replace_its_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "sweep.yaml").write_text(YAML_SWEEP)
    result = invoke_main(
        ["submit", "-f", "sweep.yaml", "--steps", "300", "--variant", "backprop", "--json"],
        tmp_path,
        monkeypatch,
        capsys,
    )
    assert result.returncode == 0, result.stderr
    jobs = json.loads(result.stdout)["jobs"]
    expected = spec_from_document(parse_sweep_text(YAML_SWEEP), {"steps": 300, "variants": ["backprop"]})
    # The flags' keys replaced, the file's others kept (its log_every, its seeds and lrs drawn with its seed).
    assert [(job["variant"], job["seed"], job["lr"], job["steps"], job["log_every"]) for job in jobs] == [
        ("backprop", seed, lr, 300, 100) for seed in expected.seeds for lr in expected.lrs
    ]


def test_run_f_trains_the_file_and_spec_runs_it_again_with_the_same_key_and_jobs(tmp_path: Path) -> None:
    home = str(tmp_path / "home")
    (tmp_path / "sweep.yaml").write_text(
        "variants: [nn]\nlrs: {sample: log_uniform, low: 0.5, high: 5, count: 2}\nsteps: 50\n"
    )
    ran = run_cli(["run", "-f", "sweep.yaml", "--json"], tmp_path, XORJOBS_HOME=home)
    assert ran.returncode == 0, ran.stderr
    trained = json.loads(ran.stdout)
    assert [job["state"] for job in trained["jobs"]] == ["succeeded", "succeeded"]
    combos = [(job["variant"], job["seed"], job["lr"]) for job in trained["jobs"]]

    # Through a pipe, as a user would: submit -f <(xorjobs spec ID) --key, twice: one sweep, same jobs.
    again = f"{XORJOBS} submit -f <({XORJOBS} spec {trained['sweep_id']}) --key k1 --json"
    first, second = (
        subprocess.run(
            ["bash", "-c", again], cwd=tmp_path, env=clean_env(XORJOBS_HOME=home), capture_output=True,
            text=True, timeout=120, check=False,
        )
        for _ in range(2)
    )  # fmt: skip
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    one, two = json.loads(first.stdout), json.loads(second.stdout)
    assert [(job["variant"], job["seed"], job["lr"]) for job in one["jobs"]] == combos
    assert one["created"] and not two["created"] and one["sweep_id"] == two["sweep_id"]


def test_a_keyed_resubmit_of_a_file_with_a_generated_sampler_seed_returns_the_same_sweep(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "sweep.yaml").write_text("variants: [nn]\nseeds: {sample: random, count: 3}\nsteps: 20\n")
    args = ["submit", "-f", "sweep.yaml", "--key", "same", "--json"]
    first = json.loads(invoke_main(args, tmp_path, monkeypatch, capsys).stdout)
    second = json.loads(invoke_main(args, tmp_path, monkeypatch, capsys).stdout)
    assert first["created"] and not second["created"] and first["sweep_id"] == second["sweep_id"]
    other = invoke_main([*args, "--sampler-seed", "1"], tmp_path, monkeypatch, capsys)
    assert other.returncode == 2 and "with a different spec" in other.stderr  # another draw: 409 / exit 2


def test_submit_reads_the_file_from_stdin(tmp_path: Path) -> None:
    result = subprocess.run(
        [XORJOBS, "submit", "-f", "-", "--json"],
        input='{"variants": ["backprop"], "seeds": [5, 6], "steps": 10}',
        cwd=tmp_path, env=clean_env(XORJOBS_HOME=str(tmp_path / "home")), capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert [job["seed"] for job in json.loads(result.stdout)["jobs"]] == [5, 6]


def test_post_sweeps_takes_the_document_with_a_sampled_lr(tmp_path: Path, database_url: str) -> None:
    settings = Settings(home=tmp_path / "home", database_url=database_url, api_token="t")
    upgrade(settings.resolved_database_url)
    auth = {"Authorization": "Bearer t", "Idempotency-Key": "doc-1"}
    lr_request: dict[str, object] = {"sample": "uniform", "low": 0.1, "high": 2, "count": 3}
    document: dict[str, object] = {"variants": ["nn"], "lrs": lr_request, "steps": 20}
    with TestClient(create_app(settings)) as client:
        created = client.post("/sweeps", json=document, headers=auth)
        assert created.status_code == 201, created.text
        sweep_id = created.json()["sweep_id"]
        lrs = [job["lr"] for job in created.json()["jobs"]]
        spec = client.get(f"/sweeps/{sweep_id}?limit=1", headers=auth).json()["spec"]
        assert spec["lrs"] == lrs and spec["sampling"]["lrs"] == {**lr_request, "high": 2.0}
        assert validate_spec({**document, "sampler_seed": spec["sampler_seed"]}).lrs == lrs  # reproducible
        for body in (document, document_of(spec), spec):  # the same document, its --spec, the stored spec
            again = client.post("/sweeps", json=body, headers=auth)
            assert again.status_code == 200 and again.json()["sweep_id"] == sweep_id, again.text
        # The drawn values are ordinary jobs: the lr filter finds one by its value.
        kept = client.get(f"/sweeps/{sweep_id}/results", params={"lr": str(lrs[1])}, headers=auth).json()
        assert [job["lr"] for job in kept["jobs"]] == [lrs[1]]
        bad = client.post("/sweeps", json={**document, "lrs": {**lr_request, "low": 0}}, headers=auth)
        assert bad.status_code == 422 and "lrs.low" in bad.json()["detail"]
        assert len(client.get("/sweeps", headers=auth).json()["sweeps"]) == 1
        # A seed range: its jobs, stored as the list, and a 422 naming the key of a bad one.
        ranged = {"variants": ["nn"], "seeds": {"first": 5, "last": 8}, "steps": 20}
        posted = client.post("/sweeps", json=ranged, headers={**auth, "Idempotency-Key": "doc-2"})
        assert posted.status_code == 201 and [job["seed"] for job in posted.json()["jobs"]] == [5, 6, 7, 8]
        stored = client.get(f"/sweeps/{posted.json()['sweep_id']}?limit=1", headers=auth).json()["spec"]
        assert stored["seeds"] == [5, 6, 7, 8] and document_of(stored)["seeds"] == ranged["seeds"]
        backwards = client.post("/sweeps", json={**ranged, "seeds": {"first": 8, "last": 5}}, headers=auth)
        assert backwards.status_code == 422 and backwards.json()["errors"][0]["field"] == "body.seeds.last"
        assert len(client.get("/sweeps", headers=auth).json()["sweeps"]) == 2


def test_the_readme_example_is_a_valid_sweep_file() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme[readme.index("### Sweep files and sampled values") :]
    example = section[section.index("```yaml\n") + len("```yaml\n") : section.index("```\n", 10)]
    spec = spec_from_document(parse_sweep_text(example, "sweep.yaml"))
    assert spec.job_count == 2000 and spec.sampler_seed == 42 and spec.stop_below == 0.05
    with pytest.raises(
        InvalidSpec, match=r"^lrs\.low \(sweep\.yaml line 7\): Input should be greater than 0"
    ):
        spec_from_document(parse_sweep_text(example.replace("low: 1e-3", "low: -1"), "sweep.yaml"))


@pytest.mark.parametrize("name", ["1e3", "1e-3", "5E+2", "null", "true", "yes", "010", "2026-12-01", ".5"])
def test_a_name_that_reads_as_a_number_prints_back_quoted(name: str) -> None:
    """`xorjobs spec` wrote `name: 1e3` bare (a string under PyYAML's YAML 1.1 rules), which a sweep file's
    YAML 1.2 numbers read back as 1000.0: `submit -f <(xorjobs spec ID)` failed with exit 2."""
    document = {"name": name, "lrs": [1e-05, 0.001, 1000.0], "seeds": [10]}
    assert parse_sweep_text(dump_document(document)).fields == document


def test_flags_beside_the_file_turn_its_stopping_rule_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # No flag value meant "off": a stopping sweep's file could not be run without its rule. Found by qa2.
    (tmp_path / "sweep.yaml").write_text(
        "variants: [nn]\nsteps: 30\nstop_below: 0.05\nstop_when_solved: true\n"
    )
    rules = []
    for flags in ([], ["--no-stop-when-solved"], ["--stop-below", "off"]):
        result = invoke_main(["submit", "-f", "sweep.yaml", *flags, "--json"], tmp_path, monkeypatch, capsys)
        assert result.returncode == 0, result.stderr
        job = json.loads(result.stdout)["jobs"][0]
        rules.append((job["stop_below"], job["stop_when_solved"]))
    assert rules == [(0.05, True), (0.05, False), (None, True)]
