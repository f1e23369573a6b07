"""``testbed traces`` show/convert/generate/fit, and fetch against a local HTTP mirror on
127.0.0.1 serving the shared trace directory (never anything outside)."""

import functools
import json
import shutil
import subprocess
import sys
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest

from testbed.cli import main
from traces import synthetic
from traces.fetch import build_registry, load_registry
from traces.formats import load
from traces.paths import trace_dir

ROOT = trace_dir()
needs_traces = pytest.mark.skipif(ROOT is None, reason="no trace directory (shared/traces)")


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def mirror():
    """Start an HTTP server on 127.0.0.1 over a directory; yields ``serve(dir) -> url``."""
    servers = []

    def serve(directory):
        handler = functools.partial(_QuietHandler, directory=str(directory))
        srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        return f"http://127.0.0.1:{srv.server_address[1]}"

    yield serve
    for srv in servers:
        srv.shutdown()
        srv.server_close()


def test_help_is_instant_and_lists_actions():
    out = subprocess.run([sys.executable, "-m", "testbed.cli", "traces", "--help"],
                         capture_output=True, text=True, check=True).stdout
    for action in ("show", "convert", "fit", "generate", "fetch", "datasets"):
        assert action in out


@needs_traces
def test_show_stats_and_plot(tmp_path, capsys):
    f = ROOT / "mahimahi" / "ATT-LTE-driving-2016.down"
    png = tmp_path / "p.png"
    assert main(["traces", "show", str(f), str(ROOT / "hsdpa" / "norway_bus_1"), "--json",
                 "--plot", str(png)]) == 0
    rows = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert rows[0]["format"] == "mahimahi" and rows[1]["format"] == "cooked"
    # PROVENANCE: 120 s, mean 4.56, per-second median / p95 3.73 / 11.08 Mbps. (Its p5,
    # 0.35, counts the 2-ms tail after second 120 as a whole second; over the 120 full
    # seconds the file's p5 is 0.576.)
    r = rows[0]
    assert r["duration_s"] == pytest.approx(120, abs=1)
    assert r["mean_mbps"] == pytest.approx(4.56, abs=0.01)
    assert (r["median_mbps"], r["p5_mbps"], r["p95_mbps"]) == pytest.approx(
        (3.73, 0.576, 11.08), abs=0.02)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_show_outage_and_table(tmp_path, capsys):
    f = tmp_path / "t.txt"
    f.write_text("0 2\n1 0\n2 0\n3 4\n")
    assert main(["traces", "show", str(f), "--format", "cooked", "--convention", "start"]) == 0
    out = capsys.readouterr().out
    assert "t.txt" in out and "outage_s" in out
    assert main(["traces", "show", str(f), "--format", "cooked", "--convention", "start",
                 "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["outage_s"] == 2.0 and r["mean_mbps"] == 1.5


def test_show_bad_file_exits_2_with_file_line(tmp_path, capsys):
    f = tmp_path / "bad.txt"
    f.write_text("0 1\n1 -3\n")
    assert main(["traces", "show", str(f)]) == 2
    err = capsys.readouterr().err
    assert f"{f}:2: negative rate" in err and "expected >= 0" in err


def test_convert_and_generate(tmp_path, capsys):
    src = tmp_path / "src.txt"
    src.write_text("".join(f"{i} {1 + i % 3}\n" for i in range(20)))
    out = tmp_path / "o.down"
    assert main(["traces", "convert", str(src), "--format", "cooked", "--to", "mahimahi",
                 "--out", str(out), "--offset-s", "5", "--duration-s", "50",
                 "--scale", "2"]) == 0
    t = load(out)
    assert t.duration_s == pytest.approx(50)
    assert t.mean_mbps() == pytest.approx(4.0, rel=0.01)
    g = tmp_path / "g.txt"
    assert main(["traces", "generate", "--profile", "hsdpa", "--duration-s", "120",
                 "--seed", "3", "--out", str(g)]) == 0
    assert load(g, "cooked").duration_s == pytest.approx(120)
    assert main(["traces", "generate", "--profile", "nope", "--out", str(g)]) == 2
    assert "unknown synthetic profile" in capsys.readouterr().err


@needs_traces
def test_fit_writes_profiles(tmp_path):
    out = tmp_path / "params.json"
    assert main(["traces", "fit", "--out", str(out), "--trace-dir", str(ROOT)]) == 0
    params = json.loads(out.read_text())
    committed = json.loads(synthetic.PARAMS_PATH.read_text())
    assert set(params["profiles"]) == set(committed["profiles"])
    assert params["profiles"]["hsdpa"]["transitions"] == \
        committed["profiles"]["hsdpa"]["transitions"]
    assert params["swipe"]["completion"] == committed["swipe"]["completion"]


@needs_traces
def test_committed_registry_matches_trace_dir():
    built = build_registry(ROOT)["datasets"]
    assert built == load_registry()
    assert sum(len(d["files"]) for d in built.values()) == 756  # PROVENANCE: 756 data files


@needs_traces
def test_fetch_from_local_mirror(tmp_path, mirror, capsys):
    url = mirror(ROOT)
    dest = tmp_path / "dl"
    assert main(["traces", "fetch", "dashlet-swipe", "--dest", str(dest),
                 "--mirror", url]) == 0
    assert "215 files" in capsys.readouterr().out
    for entry in load_registry()["dashlet-swipe"]["files"]:
        assert (dest / entry["path"]).read_bytes() == (ROOT / entry["path"]).read_bytes()
    # Names with '+' and '=' (puffer) are quoted correctly.
    assert main(["traces", "fetch", "puffer", "--dest", str(dest), "--mirror", url]) == 0
    assert len(list((dest / "puffer").iterdir())) == 40
    capsys.readouterr()
    # A second fetch keeps what is there.
    assert main(["traces", "fetch", "puffer", "--dest", str(dest), "--mirror", url]) == 0
    out = capsys.readouterr().out
    assert "0 fetched" in out and "40 already present" in out


@needs_traces
def test_fetch_rejects_corrupt_mirror_file_and_keeps_good_ones(tmp_path, mirror, capsys):
    copy = tmp_path / "mirror"
    shutil.copytree(ROOT / "oboe", copy / "oboe")
    bad = copy / "oboe" / "oboe_trace_7.txt"
    bad.write_bytes(bad.read_bytes().replace(b"\t", b" ", 1))
    (copy / "oboe" / "oboe_trace_14.txt").unlink()
    dest = tmp_path / "dl"
    assert main(["traces", "fetch", "oboe", "--dest", str(dest), "--mirror",
                 mirror(copy), "--parallel", "1"]) == 2
    err = capsys.readouterr().err
    assert "2 of 60 files failed" in err
    assert "oboe_trace_7.txt: git blob hash" in err and "oboe_trace_14.txt: HTTP 404" in err
    assert not (dest / "oboe" / "oboe_trace_7.txt").exists()
    assert not [p for p in (dest / "oboe").iterdir() if p.name.startswith(".")]
    got = sorted(p.name for p in (dest / "oboe").iterdir())
    assert len(got) == 58
    for name in got:
        assert (dest / "oboe" / name).read_bytes() == (ROOT / "oboe" / name).read_bytes()


def test_fetch_unknown_dataset(tmp_path, capsys):
    assert main(["traces", "fetch", "nope", "--dest", str(tmp_path)]) == 2
    assert "unknown dataset 'nope'" in capsys.readouterr().err


def test_datasets_lists_registry(capsys):
    assert main(["traces", "datasets"]) == 0
    out = capsys.readouterr().out
    assert "short-video-challenge" in out and "uccmisl/5Gdataset" in out


@needs_traces
def test_fetch_canonical_layout_and_zip_archive(tmp_path, mirror, monkeypatch):
    """The canonical path mapping (repo/commit/source path, and ucc-5g's zip members),
    exercised against a local server laid out like raw.githubusercontent.com."""
    import zipfile

    import traces.fetch as fetch_mod

    reg = load_registry()
    site = tmp_path / "site"
    for name in ("oboe", "ucc-5g"):
        ds = reg[name]
        base = site / ds["repo"] / ds["commit"]
        if "archive" in ds:
            base.mkdir(parents=True, exist_ok=True)
            with zipfile.ZipFile(base / ds["archive"], "w") as zf:
                for e in ds["files"]:
                    zf.write(ROOT / e["path"], e["source"])
        else:
            for e in ds["files"]:
                (base / e["source"]).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(ROOT / e["path"], base / e["source"])
    url = mirror(site)
    monkeypatch.setattr(fetch_mod, "RAW_URL", url + "/{repo}/{commit}/{path}")
    dest = tmp_path / "dl"
    for name in ("oboe", "ucc-5g"):
        res = fetch_mod.fetch(name, dest)
        assert res["fetched"] == res["files"] == len(reg[name]["files"])
        for e in reg[name]["files"]:
            assert (dest / e["path"]).read_bytes() == (ROOT / e["path"]).read_bytes()
