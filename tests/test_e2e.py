"""End to end: `testbed run` with real players, a real origin and emulated links.

2 players x 2 schedulers, 20-s sessions, on the user-space backend (no root) and on Mininet
(root). Checks: every player finishes, the summary is finite, bytes add up (event-log bytes
vs the host's interface counters, tolerance below), nothing is left behind, and an
interrupted run keeps its files and is marked incomplete.

Bytes add up: the host's interface must see at least what the player's event log counts
plus the catalog and manifests it fetched (read from the catalog on disk), and at most that
times the framing factor (Mininet veth counters include Ethernet/IP/TCP headers: 1514/1448;
the user-space relay counts payload) times 1.05 (retransmits, bytes already in the socket
when a download is cancelled) plus 2 kB a response (HTTP headers). Measured on 60-s
quick.toml runs: user-space rx - (logged + manifests) = 250-420 B a response; Mininet
rx / (logged + manifests) = 1.051-1.091.
"""

import importlib.util
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from players.accounting import SUMMARY_FIELDS
from testbed.config import config_from_dict
from testbed.results import open_run

REPO = Path(__file__).resolve().parent.parent
NEEDED = ("players.feed", "players.__main__", "testbed.emulation", "players.schedulers.fixed")
MISSING = [m for m in NEEDED if importlib.util.find_spec(m) is None]
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(bool(MISSING), reason=f"run path incomplete: {MISSING} missing")]

FRAMING = {"mininet": 1514 / 1448, "userspace": 1.0}
SLACK_RATIO = 1.05
HEADER_BYTES = 2000


def manifest_bytes(cat: Path, video: str) -> int:
    return (cat / "videos" / video / "manifest.json").stat().st_size


def catalog_bytes(cat: Path) -> int:
    return (cat / "catalog.json").stat().st_size


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    return tmp_path_factory.mktemp("e2e") / "catalog"


def e2e_config(catalog: Path, backend: str, duration_s: float = 20.0,
               mode: str = "serial") -> dict:
    from traces.paths import trace_dir

    traces = (["short-video-challenge/network/medium/0", "hsdpa/norway_bus_1"]
              if trace_dir() else ["synthetic"])
    return {
        "name": f"e2e-{backend}", "seed": 2, "mode": mode,
        "session": {"duration_s": duration_s, "max_parallel": 2},
        "catalog": {"dir": str(catalog), "count": 3, "min_duration_s": 6.0,
                    "max_duration_s": 10.0, "ladder_kbps": [100, 250, 500]},
        "feed": {"length": 10},
        "network": {"backend": backend, "traces": traces},
        "players": {"count": 2},
        "schedulers": [{"name": "no-preload"}, {"name": "fixed"}],
    }


def descendants() -> dict[int, str]:
    out = {}
    for p in psutil.Process().children(recursive=True):
        try:
            out[p.pid] = " ".join(p.cmdline()[:4])
        except psutil.Error:
            pass
    return out


def leftovers(before: dict[int, str]) -> dict[int, str]:
    return {pid: cmd for pid, cmd in descendants().items() if pid not in before}


def check_run(path: Path, backend: str) -> None:
    rd = open_run(path)
    meta = rd.metadata()
    assert meta["complete"] is True, meta.get("incomplete_reason")
    assert meta["backend"] == backend
    assert meta["git"]["commit"] and meta["catalog"]["hash"].startswith("sha256:")
    assert rd.labels() == ["no-preload", "fixed"]
    cat = Path(meta["catalog"]["dir"])
    rows = rd.summary_rows()
    assert len(rows) == 4
    for r in rows:
        for f in SUMMARY_FIELDS:
            assert math.isfinite(float(r[f])), (r["scheduler"], r["player"], f, r[f])
        assert r["bytes_downloaded"] > 0 and r["videos_started"] >= 1
    for label in rd.labels():
        for i in (0, 1):
            ev = rd.events(label, i)
            ends = [e for e in ev if e["event"] == "session_end"]
            assert len(ends) == 1 and ends[0]["reason"] in ("duration", "feed_end"), ends
            info = rd.player_info(label, i)
            assert info["exit_status"] == 0
            fetched = [e for e in ev if e["event"] in ("download_done", "download_cancel")]
            logged = sum(int(e["bytes"]) for e in fetched)
            videos = set(meta["feeds"][i]["videos"])
            app = logged + sum(manifest_bytes(cat, v) for v in videos) + catalog_bytes(cat)
            responses = len(fetched) + len(videos) + 1
            rx = info["interface_rx_bytes"]
            framing = FRAMING[backend]
            assert app <= rx <= framing * app * SLACK_RATIO + HEADER_BYTES * responses, \
                (label, i, logged, app, rx)
    for name in ("stall_vs_waste.png", "qoe.png", "stall_cdf.png", "timeline.png"):
        assert (path / "plots" / name).stat().st_size > 10_000


def _net_names() -> str:
    out = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    if shutil.which("ip") and os.geteuid() == 0:
        out += subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return out


@pytest.mark.parametrize("mode", ["serial", "parallel"])
def test_userspace_two_players_two_schedulers(catalog, tmp_path, mode):
    from testbed.run import run_experiment

    before = descendants()
    cfg = config_from_dict(e2e_config(catalog, "userspace", mode=mode), "<e2e>")
    path = run_experiment(cfg, tmp_path, backend="userspace", progress=False)
    check_run(path, "userspace")
    assert not leftovers(before)  # origin, players, relays: all gone
    rd = open_run(path)
    players = rd.metadata()["players"]
    for i in (0, 1):  # identical link conditions: player i replays the same trace under both
        assert len({p["trace_hash"] for p in players if p["player"] == i}) == 1
    starts = {p["scheduler"]: p["replay_wall_s"] for p in players if p["player"] == 0}
    gap_s = abs(starts["fixed"] - starts["no-preload"])
    # serial: one session after the other (20 s each); parallel: side by side, one replay
    assert gap_s >= 20.0 if mode == "serial" else gap_s == 0.0


@pytest.mark.root
@pytest.mark.skipif(shutil.which("mnexec") is None, reason="Mininet (mnexec) not installed")
def test_mininet_two_players_two_schedulers(catalog, tmp_path):
    from testbed.run import run_experiment

    links_before = _net_names()
    before = descendants()
    cfg = config_from_dict(e2e_config(catalog, "mininet"), "<e2e>")
    path = run_experiment(cfg, tmp_path, backend="mininet", progress=False)
    check_run(path, "mininet")
    assert not leftovers(before)
    tag = path.name[-4:]
    after = _net_names()
    assert tag not in after.replace(links_before, ""), "interfaces/namespaces of the run remain"


def test_interrupted_run_is_kept_and_marked(catalog, tmp_path):
    cfg_path = tmp_path / "c.json"
    cfg_path.write_text(json.dumps(e2e_config(catalog, "userspace", duration_s=40.0)))
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "testbed.cli", "run", str(cfg_path),
                             "--out", str(out), "--backend", "userspace", "--quiet"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    events = None
    while time.monotonic() < deadline and proc.poll() is None:
        found = list(out.glob("*/events/no-preload/player0.jsonl"))
        if found and found[0].stat().st_size > 500:
            events = found[0]
            break
        time.sleep(0.2)
    assert events is not None, proc.communicate(timeout=30)
    kids = {p.pid for p in psutil.Process(proc.pid).children(recursive=True)}
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    run_dir = events.parent.parent.parent
    meta = open_run(run_dir).metadata()
    assert meta["complete"] is False and "KeyboardInterrupt" in meta["incomplete_reason"]
    # what the links applied is recorded for the interrupted session too
    assert meta["link_params"] and meta["link_params"][0]["params"]["links"]
    ev = open_run(run_dir).events("no-preload", 0)
    assert ev[-1]["event"] == "session_end" and ev[-1]["reason"] == "aborted"
    assert (run_dir / "summary.csv").exists()
    time.sleep(0.5)
    assert not [p for p in kids if psutil.pid_exists(p) and
                psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
