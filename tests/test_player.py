"""The player on loopback against a real origin (`testbed serve` in a subprocess), real PyAV.

The player process tests start a real OS process that registers this file's test scheduler
(the baselines live in players/schedulers/, written by another engineer) and then runs
``players.player.main``, exactly what ``python -m players`` runs.
"""

from __future__ import annotations

import asyncio
import json
import math
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from origin import manifest as mf
from origin.prepare import PrepareConfig, prepare_catalog
from players.accounting import read_events, summarize
from players.player import Player, PlayerConfigError, config_from_dict
from players.schedulers.base import Download, Scheduler, Wait, available, register

REPO = Path(__file__).resolve().parent.parent


@register
class _Sequential(Scheduler):
    """Test-only: every chunk of the window in feed order, lowest representation."""

    name = "test-sequential"

    def decide(self, obs):
        for v in obs.videos:
            first = int(obs.playhead_s // v.chunk_s) if v.position == obs.current else 0
            for c in range(first, v.n_chunks):
                if c not in v.downloaded and not obs.is_in_flight(v.position, c):
                    return Download(v.position, c, v.representations[0].name)
        return Wait(0.5)


@register
class _IllegalFirst(_Sequential):
    """Test-only: answers an illegal action first, then behaves like test-sequential."""

    name = "test-illegal-first"

    def decide(self, obs):
        if not getattr(self, "_done", False):
            self._done = True
            return Download(obs.current, 99, "pixel/h264/200")
        return super().decide(obs)


# --------------------------------------------------------------------------- fixtures


def _prepare(out: Path) -> Path:
    prepare_catalog(PrepareConfig(out=out, count=2, duration_s=3.0, codecs=("h264",),
                                  ladder_kbps=(200,), width=64, height=64, jobs=1,
                                  decode_samples=2), progress=False)
    return out


class Origin:
    def __init__(self, catalog: Path, log: Path):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "testbed.cli", "serve", "--catalog", str(catalog),
             "--host", "127.0.0.1", "--port", "0", "--access-log", str(log)],
            cwd=REPO, stdout=subprocess.PIPE, text=True)
        self.log = log
        deadline = time.monotonic() + 30
        line = ""
        while time.monotonic() < deadline and not line:
            line = self.proc.stdout.readline()
            if self.proc.poll() is not None:
                break
        assert line, "origin did not start"
        self.url = json.loads(line)["url"]

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=20)

    def body_bytes(self) -> int:
        total = 0
        for line in self.log.read_text().splitlines():
            rec = json.loads(line)
            if "/pixel/" in rec.get("path", "") and rec.get("status") == 200:
                total += int(rec.get("body_bytes", rec.get("bytes", 0)))
        return total


@pytest.fixture(scope="module")
def catalog(tmp_path_factory) -> Path:
    return _prepare(tmp_path_factory.mktemp("cat"))


@pytest.fixture()
def origin(catalog, tmp_path):
    o = Origin(catalog, tmp_path / "access.jsonl")
    yield o
    o.stop()


def _config(origin_url: str, tmp: Path, **over) -> dict:
    cfg = {
        "origin_url": origin_url,
        "feed": {"videos": ["v000", "v001", "v000", "v001"], "watch_s": [3.0, 1.5, 3.0, 3.0]},
        "scheduler": {"name": "test-sequential", "params": {}, "seed": 1},
        "session": {"duration_s": 10.0, "window": 3, "max_parallel": 2,
                    "cancel_useless": True, "decide_interval_s": 0.5,
                    "initial_throughput_mbps": 1.0},
        "devices": ["cpu"], "device_profile": "measured", "decode": "real",
        "sample_interval_s": 0.5,
        "events_path": str(tmp / "events.jsonl"),
        "resources_path": str(tmp / "resources.jsonl"),
        "summary_path": str(tmp / "summary.json"),
        "qoe": {"mu": 1.85, "lam": 1.0, "download": 0.5},
    }
    cfg.update(over)
    return cfg


def _launch(cfg: dict, tmp: Path) -> subprocess.Popen:
    path = tmp / "player.json"
    path.write_text(json.dumps(cfg))
    # A real separate process: register this file's test schedulers, then run the player.
    code = ("import importlib.util, sys; "
            f"s = importlib.util.spec_from_file_location('player_test_mod', {str(__file__)!r}); "
            "m = importlib.util.module_from_spec(s); s.loader.exec_module(m); "
            "from players.player import main; sys.exit(main(sys.argv[1:]))")
    return subprocess.Popen([sys.executable, "-c", code, str(path)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


# --------------------------------------------------------------------------- process tests


def test_player_process_completes_10s_session(origin, tmp_path):
    proc = _launch(_config(origin.url, tmp_path), tmp_path)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    ev = read_events(tmp_path / "events.jsonl")
    assert ev[0]["event"] == "session_start" and ev[-1]["event"] == "session_end"
    # watch times 3 + 1.5 + 3 + 3 = 10.5 s of content > 10 s session
    assert ev[-1]["reason"] == "duration"
    assert ev[-1]["t_s"] == pytest.approx(10.0, abs=0.05)
    assert abs(ev[0]["wall_s"] - time.time()) < 60  # wall clock at session time 0
    swipes = [e for e in ev if e["event"] == "swipe"]
    assert [round(e["watch_s"], 3) for e in swipes] == [3.0, 1.5, 3.0]
    summary = json.loads((tmp_path / "summary.json").read_text())
    for k in ("stall_s", "startup_s_mean", "qoe", "cpu_s", "peak_rss_mb", "decode_s"):
        assert math.isfinite(summary[k]), k
    # an unconstrained loopback link: startup only, at most a few tens of ms each
    assert summary["stall_s"] < 1.0 and summary["startup_s_mean"] < 1.0
    assert summary["chunks_decoded"] >= 9
    # bytes: the log agrees with what the origin sent, and the interface saw at least that
    done = sum(e["bytes"] for e in ev if e["event"] in ("download_done", "download_cancel"))
    assert summary["bytes_downloaded"] == done
    assert origin.body_bytes() >= done
    # video 1 (watched 1.5 s of 3) leaves chunk 2 unplayed: waste
    assert summary["bytes_wasted"] > 0
    assert summary == {**summary, **summarize(ev, resources=summary["resources"])}
    samples = [json.loads(x) for x in (tmp_path / "resources.jsonl").read_text().splitlines()]
    assert len(samples) >= 15  # 0.5-s period over ~10 s
    assert samples[-1]["net"]["lo"]["rx_bytes"] - samples[0]["net"]["lo"]["rx_bytes"] >= done
    assert json.loads(out.strip().splitlines()[-1])["event"] == "player_done"


def test_sigterm_ends_session_aborted_and_keeps_log(origin, tmp_path):
    cfg = _config(origin.url, tmp_path)
    cfg["session"]["duration_s"] = 60.0
    cfg["feed"] = {"videos": ["v000", "v001"] * 20, "watch_s": [3.0] * 40}
    proc = _launch(cfg, tmp_path)
    ev_path = tmp_path / "events.jsonl"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if ev_path.exists() and '"swipe"' in ev_path.read_text():
            break
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    ev = read_events(ev_path)
    assert ev[-1]["event"] == "session_end" and ev[-1]["reason"] == "aborted"
    assert any(e["event"] == "swipe" for e in ev)
    assert ev[-1]["t_s"] < 30
    assert json.loads((tmp_path / "summary.json").read_text())["end_reason"] == "aborted"


def test_bad_config_exits_2_naming_the_field(tmp_path):
    cfg = _config("http://127.0.0.1:9", tmp_path)
    cfg["session"]["max_parallel"] = 0
    proc = _launch(cfg, tmp_path)
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert "session.max_parallel" in err and len(err.strip().splitlines()) == 1


def test_unreachable_origin_exits_1_with_one_line(tmp_path):
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    proc = _launch(_config(f"http://127.0.0.1:{port}", tmp_path), tmp_path)
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("player:") and str(port) in lines[0]


@pytest.mark.skipif("no-preload" not in available(), reason="baselines not written yet")
def test_python_m_players_with_a_baseline(origin, tmp_path):
    cfg = _config(origin.url, tmp_path, scheduler={"name": "no-preload", "params": {}, "seed": 1})
    cfg["session"]["duration_s"] = 5.0
    path = tmp_path / "p.json"
    path.write_text(json.dumps(cfg))
    r = subprocess.run([sys.executable, "-m", "players", str(path)], cwd=REPO,
                       check=False, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert read_events(tmp_path / "events.jsonl")[-1]["reason"] == "duration"


# --------------------------------------------------------------------------- in-process


def test_illegal_action_is_logged_and_becomes_wait(origin, tmp_path):
    cfg = _config(origin.url, tmp_path, scheduler={"name": "test-illegal-first"})
    cfg["session"]["duration_s"] = 3.0
    cfg["feed"] = {"videos": ["v000", "v001"], "watch_s": [3.0, 3.0]}
    summary = asyncio.run(Player(config_from_dict(cfg)).run())
    ev = read_events(tmp_path / "events.jsonl")
    ill = [e for e in ev if e["event"] == "illegal_action"]
    assert len(ill) == 1 and "chunk 99" in ill[0]["error"]
    # nothing downloaded until the Wait ended (decide_interval_s = 0.5 s)
    first_dl = next(e for e in ev if e["event"] == "download_start")
    assert first_dl["t_s"] >= 0.49
    assert summary["startup_s_mean"] >= 0.49 and summary["end_reason"] == "duration"


def test_corrupt_chunk_is_a_decode_error_event_not_a_crash(catalog, tmp_path):
    bad = shutil.copytree(catalog, tmp_path / "badcat")
    vm = mf.load_catalog(bad).load_video("v001")
    c = vm.representation("pixel/h264/200").chunks[0]
    f = mf.video_dir(bad, "v001") / c.path
    f.write_bytes(b"\x00\x00\x00\x01" + bytes(range(256)) * (c.bytes // 256) +
                  b"\x00" * (c.bytes - 4 - 256 * (c.bytes // 256)))
    o = Origin(bad, tmp_path / "access.jsonl")
    try:
        cfg = _config(o.url, tmp_path)
        cfg["session"]["duration_s"] = 4.5
        cfg["feed"] = {"videos": ["v000", "v001"], "watch_s": [3.0, 3.0]}
        summary = asyncio.run(Player(config_from_dict(cfg)).run())
    finally:
        o.stop()
    ev = read_events(tmp_path / "events.jsonl")
    errs = [e for e in ev if e["event"] == "decode_error"]
    assert errs and errs[0]["position"] == 1 and errs[0]["chunk"] == 0
    assert "corrupt" in errs[0]["error"]
    # video 1 never starts playing: its startup is still open at the end
    assert ev[-1]["event"] == "session_end" and ev[-1]["startup_open"] is True
    assert summary["end_reason"] == "duration"


def test_config_errors_name_the_field(tmp_path):
    base = _config("http://127.0.0.1:1", tmp_path)
    bad = [
        ({"origin_url": "ftp://x"}, "origin_url"),
        ({"feed": {"videos": ["v000"], "watch_s": [1, 2]}}, "feed.watch_s"),
        ({"feed": {"videos": [], "watch_s": []}}, "feed.videos"),
        ({"decode": "fast"}, "decode"),
        ({"devices": []}, "devices"),
        ({"qoe": {"mu": -1}}, "qoe.mu"),
        ({"bogus": 1}, "bogus"),
    ]
    for over, field in bad:
        with pytest.raises(PlayerConfigError, match=field.replace(".", r"\.")):
            config_from_dict({**base, **over}, "p.json")
    cfg = config_from_dict(base)
    assert cfg.max_parallel == 2 and cfg.scheduler == "test-sequential"


def test_swipe_cancels_useless_downloads_partial_bytes_are_waste(origin, tmp_path):
    """A real aiohttp proxy in front of the origin trickles chunk bodies (4 KiB / 100 ms), so
    downloads of the first video are still in flight when the user swipes at 0.2 s."""
    import aiohttp
    from aiohttp import web

    async def proxy(request):
        async with aiohttp.ClientSession() as s, s.get(origin.url + request.path) as r:
            body = await r.read()
            if "/pixel/" not in request.path:
                return web.Response(body=body, status=r.status,
                                    content_type=r.content_type)
        resp = web.StreamResponse()
        resp.content_length = len(body)
        await resp.prepare(request)
        for i in range(0, len(body), 4096):
            await resp.write(body[i:i + 4096])
            await asyncio.sleep(0.1)
        return resp

    async def main():
        app = web.Application()
        app.router.add_get("/{tail:.*}", proxy)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        try:
            cfg = _config(url, tmp_path)
            cfg["session"]["duration_s"] = 3.0
            cfg["feed"] = {"videos": ["v000", "v001"], "watch_s": [0.2, 3.0]}
            return await Player(config_from_dict(cfg)).run()
        finally:
            await runner.cleanup()

    summary = asyncio.run(main())
    ev = read_events(tmp_path / "events.jsonl")
    cancels = [e for e in ev if e["event"] == "download_cancel" and e["reason"] == "swiped"]
    assert cancels and all(e["position"] == 0 for e in cancels)
    total = {(e["position"], e["chunk"]): e["bytes_total"]
             for e in ev if e["event"] == "download_start"}
    assert all(0 <= e["bytes"] < total[(0, e["chunk"])] for e in cancels)
    assert any(e["bytes"] > 0 for e in cancels)
    swipe_t = next(e["t_s"] for e in ev if e["event"] == "swipe")
    assert all(e["t_s"] - swipe_t < 0.1 for e in cancels)
    partial = sum(e["bytes"] for e in cancels)
    assert summary["bytes_wasted"] >= partial > 0


def test_profile_decode_mode_holds_to_the_measured_cost(origin, catalog, tmp_path):
    """decode = "profile": no PyAV work, each decode held to the manifest's measured cost."""
    cfg = _config(origin.url, tmp_path, decode="profile")
    cfg["session"]["duration_s"] = 2.0
    cfg["feed"] = {"videos": ["v000", "v001"], "watch_s": [3.0, 3.0]}
    summary = asyncio.run(Player(config_from_dict(cfg)).run())
    ev = read_events(tmp_path / "events.jsonl")
    dec = [e for e in ev if e["event"] == "decode_done"]
    cost = mf.load_catalog(catalog).load_video("v000").representation(
        "pixel/h264/200").decode_cost["cpu"].s_per_chunk_mean
    assert dec and all(e["work_s"] == 0 and e["frames"] == 30 for e in dec)
    assert all(e["decode_s"] >= cost - 1e-3 for e in dec if e["position"] == 0)
    assert summary["end_reason"] == "duration"
