"""``testbed simulate`` end to end on a tiny prepared catalog: results layout, compare,
determinism across two runs, and clear errors."""

import json
from pathlib import Path

import pytest

from origin.prepare import PrepareConfig, prepare_catalog
from testbed.cli import main
from testbed.results import open_run


@pytest.fixture(scope="module")
def catalog(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cat")
    prepare_catalog(PrepareConfig(out=out, count=3, duration_s=4.0, codecs=("h264",),
                                  ladder_kbps=(100, 300), width=64, height=64, jobs=1,
                                  decode_samples=1), progress=False)
    return out


def write_config(tmp_path: Path, catalog: Path, trace: str = "synthetic") -> Path:
    cfg = tmp_path / "sim.toml"
    cfg.write_text(f"""
name = "simtest"
seed = 3
[session]
duration_s = 30.0
max_parallel = 2
[catalog]
dir = "{catalog}"
[feed]
length = 12
swipe = "synthetic"
[network]
traces = ["{trace}"]
[players]
count = 2
[simulator]
request_latency_s = 0.02
[[schedulers]]
name = "no-preload"
[[schedulers]]
name = "greedy-compute"
[[schedulers]]
name = "promptpream"
params = {{ max_iterations = 16 }}
""")
    return cfg


def test_simulate_writes_results_layout_and_is_deterministic(tmp_path, catalog, capsys):
    cfg = write_config(tmp_path, catalog)
    assert main(["simulate", str(cfg), "--out", str(tmp_path / "r1"), "--quiet",
                 "--no-plots"]) == 0
    out = capsys.readouterr().out
    assert "promptpream" in out and "results:" in out
    assert main(["simulate", str(cfg), "--out", str(tmp_path / "r2"), "--quiet",
                 "--no-plots", "--set", "name=again"]) == 0
    (r1,) = [open_run(p) for p in (tmp_path / "r1").iterdir()]
    (r2,) = [open_run(p) for p in (tmp_path / "r2").iterdir()]
    meta = r1.metadata()
    assert meta["backend"] == "simulator" and meta["complete"] is True
    assert meta["simulator"]["request_latency_s"] == 0.02
    assert r1.labels() == ["no-preload", "greedy-compute", "promptpream"]
    rows = r1.summary_rows()
    assert len(rows) == 6 and {r["backend"] for r in rows} == {"simulator"}
    for label in r1.labels():
        for i in (0, 1):
            a = (r1.path / "events" / label / f"player{i}.jsonl").read_bytes()
            b = (r2.path / "events" / label / f"player{i}.jsonl").read_bytes()
            assert a == b and a
    # the scheduler that preloads plays with less waiting than the one that does not
    by = {(r["scheduler"], r["player"]): r for r in rows}
    assert sum(by[("greedy-compute", i)]["rebuffer_s"] for i in (0, 1)) <= \
        sum(by[("no-preload", i)]["rebuffer_s"] for i in (0, 1))
    assert main(["compare", str(r1.path), str(r2.path), "--out", str(tmp_path / "cmp")]) == 0
    assert (tmp_path / "cmp").is_dir()


def test_simulate_bad_input_is_one_line_error(tmp_path, catalog, capsys, monkeypatch):
    # A trace directory exists, so a trace it lacks is an error (with none at all, the run
    # falls back to the synthetic generator instead).
    (tmp_path / "traces").mkdir()
    monkeypatch.setenv("PROMPTBED_TRACES", str(tmp_path / "traces"))
    cfg = write_config(tmp_path, catalog, trace="no/such/trace")
    assert main(["simulate", str(cfg), "--out", str(tmp_path / "r"), "--quiet",
                 "--no-plots"]) == 2
    err = capsys.readouterr().err
    assert "no/such/trace" in err and err.count("\n") == 1
    assert main(["simulate", str(cfg), "--set", "simulator.decode_scale=-1"]) == 2
    assert "simulator.decode_scale" in capsys.readouterr().err


def test_simulate_help_names_the_options(capsys):
    with pytest.raises(SystemExit):
        main(["simulate", "--help"])
    out = capsys.readouterr().out
    for word in ("--out", "--set", "request_latency_s", "simulator"):
        assert word in out
    json.dumps(out)
