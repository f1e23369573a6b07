"""Pieces of the run path that stand alone: catalog preparation, origin readiness over a
real socket, process stop, identical link traces, progress tail, signals, provenance."""

import json
import os
import re
import signal
import subprocess
import sys
import urllib.request

import pytest

from testbed import provenance
from testbed.config import CatalogConfig, NetworkConfig, RunConfig, SessionConfig
from testbed.results import RunDir, open_run
from testbed.run import (
    EventTail,
    RunError,
    RunInterrupted,
    ensure_catalog,
    finish,
    link_traces,
    signals_raise,
    stop_process,
    wait_for_json_line,
)


@pytest.fixture(scope="module")
def tiny_catalog(tmp_path_factory):
    root = tmp_path_factory.mktemp("cat")
    cfg = RunConfig(catalog=CatalogConfig(dir=str(root / "c"), count=1, min_duration_s=2.0,
                                          max_duration_s=2.0, ladder_kbps=(100,)))
    return ensure_catalog(cfg, progress=False)


def test_catalog_prepared_once_and_hashed(tiny_catalog):
    assert (tiny_catalog / "catalog.json").is_file()
    h = provenance.catalog_hash(tiny_catalog)
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", h)
    cfg = RunConfig(catalog=CatalogConfig(dir=str(tiny_catalog), count=5))
    mtime = (tiny_catalog / "catalog.json").stat().st_mtime_ns
    assert ensure_catalog(cfg, progress=False) == tiny_catalog.resolve()
    assert (tiny_catalog / "catalog.json").stat().st_mtime_ns == mtime  # reused, not redone
    assert provenance.catalog_hash(tiny_catalog) == h
    assert provenance.catalog_hash(tiny_catalog / "nope") is None


def test_origin_listening_line_then_graceful_stop(tiny_catalog):
    proc = subprocess.Popen([sys.executable, "-m", "testbed.cli", "serve", "--catalog",
                             str(tiny_catalog), "--host", "127.0.0.1", "--port", "0",
                             "--access-log", os.devnull], stdout=subprocess.PIPE)
    try:
        rec = wait_for_json_line(proc, "event", "listening", 30.0, "origin")
        with urllib.request.urlopen(f"{rec['url']}/catalog.json", timeout=5) as resp:
            assert json.loads(resp.read())["videos"]
    finally:
        status = stop_process(proc)
    assert status == 0


def test_ready_wait_fails_on_exit_and_on_deadline():
    p = subprocess.Popen([sys.executable, "-c", "print('no json here')"], stdout=subprocess.PIPE)
    with pytest.raises(RunError, match="x: exited with status 0 before it was ready"):
        wait_for_json_line(p, "event", "listening", 10.0, "x")
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"],
                         stdout=subprocess.PIPE)
    try:
        with pytest.raises(RunError, match="y: not ready within"):
            wait_for_json_line(p, "event", "listening", 0.5, "y")
    finally:
        stop_process(p)


def test_stop_process_kills_what_ignores_sigterm():
    p = subprocess.Popen([sys.executable, "-c",
                          "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
                          "print('ready', flush=True); time.sleep(60)"], stdout=subprocess.PIPE)
    p.stdout.readline()
    assert stop_process(p, wait_s=0.5) == -signal.SIGKILL


def _cfg(**network):
    return RunConfig(seed=3, session=SessionConfig(duration_s=20.0),
                     network=NetworkConfig(**network))


def test_link_traces_identical_offset_and_cyclic():
    from traces.paths import open_trace, trace_dir

    if trace_dir() is None:
        pytest.skip("no trace directory")
    spec = "short-video-challenge/network/medium/0"
    a = link_traces(_cfg(traces=(spec, "hsdpa/norway_bus_1"), trace_offset_s=7.0), 3)
    b = link_traces(_cfg(traces=(spec, "hsdpa/norway_bus_1"), trace_offset_s=7.0), 3)
    assert [t.hash for t in a] == [t.hash for t in b]
    assert a[0].hash == a[2].hash != a[1].hash  # reused cyclically
    orig = open_trace(spec)
    for t_s in (0.0, 1.3, 10.0):
        assert a[0].trace.rate_at(t_s) == orig.rate_at(orig.start_s + 7.0 + t_s)
    assert a[0].trace.duration_s >= 20.0


def test_synthetic_links_seeded_per_link():
    a = link_traces(_cfg(), 2)
    b = link_traces(_cfg(), 2)
    assert [t.hash for t in a] == [t.hash for t in b]
    assert a[0].hash != a[1].hash


def test_event_tail_follows_a_growing_log(tmp_path):
    p = tmp_path / "e.jsonl"
    tail = EventTail(p)
    tail.poll()  # not there yet
    assert tail.state == "starting"
    with open(p, "w") as fh:
        fh.write(json.dumps({"t_s": 0.0, "event": "video_start", "position": 0}) + "\n")
        fh.write('{"t_s": 1.0, "event": "stall_st')
    tail.poll()
    assert tail.position == 0 and tail.state == "startup"
    with open(p, "a") as fh:
        fh.write('art", "position": 0}\n')
    tail.poll()
    assert tail.state == "stalled" and tail.stalls == 1


def test_sigterm_becomes_run_interrupted():
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(RunInterrupted, match="SIGTERM"), signals_raise():
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(10_000):  # the handler runs between bytecodes
            pass
    assert signal.getsignal(signal.SIGTERM) is before


def test_finish_marks_incomplete_and_keeps_files(tmp_path):
    rd = RunDir.create(tmp_path, "r", {"schedulers": ["a"]})
    with open(rd.events_path("a", 0), "w") as fh:
        fh.write(json.dumps({"t_s": 0.0, "event": "session_start"}) + "\n")
        fh.write(json.dumps({"t_s": 0.0, "event": "video_start", "position": 0}) + "\n")
    finish(rd, False, "RunInterrupted: signal SIGTERM", plots=False)
    meta = open_run(rd.path).metadata()
    assert meta["complete"] is False and "SIGTERM" in meta["incomplete_reason"]
    rows = rd.summary_rows()
    assert len(rows) == 1 and rows[0]["scheduler"] == "a"


def test_provenance_block():
    p = provenance.collect(["testbed", "run", "x.toml"])
    assert p["command_line"] == ["testbed", "run", "x.toml"]
    assert re.fullmatch(r"[0-9a-f]{40}", p["git"]["commit"])
    assert isinstance(p["git"]["dirty"], bool)
    assert p["packages"]["numpy"] and p["packages"]["aiohttp"]
    assert p["system"]["kernel"] == os.uname().release


def test_git_state_counts_untracked_files(tmp_path):
    import subprocess as sp

    from testbed.provenance import git_state

    repo = tmp_path / "repo"
    repo.mkdir()
    for argv in (["init", "-q"], ["-c", "user.email=t@t", "-c", "user.name=t", "commit", "-q",
                                   "--allow-empty", "-m", "root"]):
        sp.run(["git", "-C", str(repo), *argv], check=True)
    assert git_state(repo)["dirty"] is False
    (repo / "new_module.py").write_text("x = 1\n")
    st = git_state(repo)
    assert st["dirty"] is True and st["dirty_files"] == ["new_module.py"]
