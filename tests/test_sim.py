"""The discrete-event simulator against analytic cases, and its determinism."""

import json

import numpy as np
import pytest

from players.accounting import summarize
from players.schedulers.base import Download, RepInfo, Scheduler, Wait
from players.session import VideoSpec
from testbed.simulator import LinkModel, SimSettings, simulate_session
from traces.trace import Trace

REP = "pixel/h264/500"


def spec(vid="v0", n=4, nbytes=125_000, q=0.5, decode_s=0.0, prompt=False):
    reps = [RepInfo(REP, "pixel", 500.0, (nbytes,) * n, (q,) * n, {"cpu": decode_s})]
    if prompt:
        reps.append(RepInfo("prompt/local/r8", "prompt", 40.0, (5000,) * n, (0.4,) * n,
                            {"cpu": 0.8, "npu": 0.1}))
    return VideoSpec(vid, float(n), 1.0, n, tuple(reps), (0.0,) * n + (1.0,))


def constant(mbps, dur=10_000.0):
    return Trace(np.array([0.0]), np.array([float(mbps)]), dur, name=f"const{mbps}")


class Sequential(Scheduler):
    """Fetch every chunk in feed order (window-limited) in one representation."""

    name = ""  # not registered: a test scheduler

    def __init__(self, rep=REP, device=None, ahead=99):
        super().__init__()
        self.rep, self.device, self.ahead = rep, device, ahead

    def decide(self, obs):
        for v in obs.videos[: self.ahead]:
            first = int(obs.playhead_s // v.chunk_s) if v.position == obs.current else 0
            for c in range(first, v.n_chunks):
                if c not in v.downloaded and not obs.is_in_flight(v.position, c):
                    return Download(v.position, c, self.rep, self.device)
        return Wait(0.5)


def kinds(ev, name):
    return [e for e in ev if e["event"] == name]


def test_constant_link_download_times_exact():
    # 125,000 B = 1 Mbit at 2 Mbit/s: 0.5 s each, one after another; latency 0.05 s.
    ev = simulate_session([spec(n=4)], [4.0], constant(2.0), Sequential(),
                          SimSettings(session_s=10, max_parallel=1, request_latency_s=0.05))
    done = kinds(ev, "download_done")
    assert [d["chunk"] for d in done] == [0, 1, 2, 3]
    for i, d in enumerate(done):
        assert d["duration_s"] == pytest.approx(0.55, abs=1e-9)
        assert d["t_s"] == pytest.approx(0.55 * (i + 1), abs=1e-6)
    assert kinds(ev, "play_start")[0]["startup_s"] == pytest.approx(0.55, abs=1e-6)


def test_processor_sharing_splits_capacity_equally():
    # Two 1-Mbit chunks at once on 2 Mbit/s: both finish at 1.0 s (each gets 1 Mbit/s).
    # Then a 1-Mbit and a 0.5-Mbit flow: the small one ends at 0.5 s, the other 0.25 s later.
    feed = [VideoSpec("v", 3.0, 1.0, 3, (RepInfo(REP, "pixel", 500.0, (125_000, 125_000, 62_500),
                                                 (0.5,) * 3, {"cpu": 0.0}),), (0.0,) * 3 + (1.0,))]
    ev = simulate_session(feed, [3.0], constant(2.0), Sequential(), SimSettings(session_s=5))
    done = {d["chunk"]: d["t_s"] for d in kinds(ev, "download_done")}
    assert done[0] == pytest.approx(1.0, abs=1e-6) and done[1] == pytest.approx(1.0, abs=1e-6)
    assert done[2] == pytest.approx(1.25, abs=1e-6)


def test_link_model_varying_trace_is_exact():
    tr = Trace(np.array([0.0, 1.0, 2.0]), np.array([1.0, 0.0, 4.0]), 1.0)
    link = LinkModel(tr)
    link.add((0, 0), 250_000, 0.0, 0.0)  # 2 Mbit: 1 Mbit by t=1, nothing until 2, 1 Mbit at 4
    t = link.next_event_s(0.0)
    assert t == pytest.approx(2.25)
    assert link.advance(0.0, t) == [(0, 0)]


def test_no_swipe_ample_bandwidth_zero_stall():
    feed = [spec(f"v{i}", n=5, decode_s=0.01) for i in range(4)]
    ev = simulate_session(feed, [5.0] * 4, constant(100.0), Sequential(),
                          SimSettings(session_s=100, max_parallel=2))
    s = summarize(ev)
    assert s["stall_s"] == 0.0 and s["stall_count"] == 0
    assert kinds(ev, "session_end")[0]["reason"] == "feed_end"
    assert s["play_s"] == pytest.approx(20.0)
    # startup of later videos is zero: they were decoded before they came on screen
    assert [e["startup_s"] for e in kinds(ev, "play_start")][1:] == [0.0, 0.0, 0.0]
    assert s["bytes_wasted"] == 0


def test_slow_link_stalls_and_swipes_waste():
    feed = [spec(f"v{i}", n=4) for i in range(3)]
    ev = simulate_session(feed, [1.5, 4.0, 4.0], constant(0.8), Sequential(),
                          SimSettings(session_s=30, max_parallel=2))
    s = summarize(ev)
    assert s["stall_s"] > 0
    assert kinds(ev, "download_cancel")  # in flight for video 0 when the user left it
    assert s["bytes_wasted"] > 0


def test_decode_devices_take_profile_time():
    feed = [spec("v0", n=3, prompt=True)]
    ev = simulate_session(feed, [3.0], constant(10.0),
                          Sequential(rep="prompt/local/r8", device="npu"),
                          SimSettings(session_s=10, max_parallel=1, devices=("cpu", "npu")))
    dec = kinds(ev, "decode_done")
    assert [d["device"] for d in dec] == ["npu"] * 3
    assert all(d["decode_s"] == pytest.approx(0.1) for d in dec)
    starts = kinds(ev, "decode_start")
    done0 = kinds(ev, "download_done")[0]["t_s"]
    assert starts[0]["t_s"] == pytest.approx(done0)
    assert dec[0]["t_s"] == pytest.approx(done0 + 0.1, abs=1e-6)


def test_zero_capacity_link_ends_at_duration_with_startup_open():
    ev = simulate_session([spec()], [4.0], constant(0.0), Sequential(), SimSettings(session_s=5))
    end = kinds(ev, "session_end")[0]
    assert end["reason"] == "duration" and end["startup_open"] and end["t_s"] == 5.0
    assert kinds(ev, "download_cancel")[0]["bytes"] == 0


def test_same_inputs_bit_identical_events():
    rng = np.random.default_rng(3)
    tr = Trace(np.arange(0, 60, 0.5), rng.uniform(0.2, 3.0, 120), 0.5)
    feed = [spec(f"v{i}", n=6, decode_s=0.02, prompt=True) for i in range(8)]
    watch = [1.3, 6.0, 2.2, 0.4, 5.5, 3.3, 6.0, 1.0]
    runs = [json.dumps(simulate_session(feed, watch, tr, Sequential(ahead=2),
                                        SimSettings(session_s=40, request_latency_s=0.02)))
            for _ in range(2)]
    assert runs[0] == runs[1]


def test_queue_model_first_byte_waits_behind_queued_bytes():
    # 2 Mbit/s, a 25,000-B (0.2 Mbit) queue: a download started next to a running 1-Mbit
    # one gets its first byte after 0.1 s, then shares: 0.1 Mbit more at 1 Mbit/s.
    link = LinkModel(constant(2.0), queue_bytes=25_000)
    link.add((0, 0), 125_000, 0.0, 0.0)
    link.add((0, 1), 12_500, 0.0, 0.0)
    t = link.next_event_s(0.0)
    assert t == pytest.approx(0.1)
    assert link.advance(0.0, t) == []
    assert link.bytes_done((0, 0)) == 25_000 and link.bytes_done((0, 1)) == 0
    t2 = link.next_event_s(t)
    assert t2 == pytest.approx(0.2)
    assert link.advance(t, t2) == [(0, 1)]
    # without a queue both share from the start: the small one ends at 0.1 s
    link = LinkModel(constant(2.0))
    link.add((0, 0), 125_000, 0.0, 0.0)
    link.add((0, 1), 12_500, 0.0, 0.0)
    assert link.next_event_s(0.0) == pytest.approx(0.1)


# ------------------------------------------------------------- dashlet's faster chunk risks
# The plain form of Dashlet's risk (players/schedulers/_common.py before it was made
# faster for the simulator): the reference the fast form must match bit for bit.
def _ref_watch_grid(v, after_s):
    from players.schedulers._common import GRID_S

    n = len(v.watch_pmf) - 1
    points = [(j + 0.5, p) for j, p in enumerate(v.watch_pmf[:n])]
    points.append((v.duration_s, v.watch_pmf[n] if n >= 0 else 1.0))
    out, total = {}, 0.0
    for w, p in points:
        if p > 0 and w > after_s:
            k = round((w - after_s) / GRID_S)
            out[k] = out.get(k, 0.0) + p
            total += p
    if total <= 0:
        return {round(max(v.duration_s - after_s, 0.0) / GRID_S): 1.0}
    return {k: p / total for k, p in out.items()}


def _ref_chunk_risks(obs, horizon_s):
    from players.schedulers._common import GRID_S, first_chunk, start_s

    limit = round(horizon_s / GRID_S)
    dists = [{0: 1.0}]
    for i, v in enumerate(obs.videos[:-1]):
        rem = _ref_watch_grid(v, obs.playhead_s if i == 0 else 0.0)
        nxt = {}
        for a, pa in dists[-1].items():
            for b, pb in rem.items():
                if a + b < limit:
                    nxt[a + b] = nxt.get(a + b, 0.0) + pa * pb
        dists.append(nxt)
    risks = {}
    for i, v in enumerate(obs.videos):
        base = start_s(obs, v)
        reach0 = v.prob_reaching_s(base) if i == 0 else 1.0
        for c in range(first_chunk(obs, v), v.n_chunks):
            offset_s = max(c * v.chunk_s - base, 0.0)
            if offset_s >= horizon_s:
                break
            if c * v.chunk_s <= base:
                p_watch = 1.0
            else:
                p_watch = v.prob_reaching_s(c * v.chunk_s) / reach0 if reach0 > 0 else 0.0
            risk = 0.0
            for k, ps in dists[i].items():
                t = k * GRID_S + offset_s
                if t < horizon_s:
                    risk += (horizon_s - t) * ps * min(p_watch, 1.0)
            risks[(v.position, c)] = risk
    return risks


def _random_feed(rng, n_videos):
    feed = []
    for i in range(n_videos):
        n = int(rng.integers(2, 30))
        # durations off the whole second too (then watch_grid's keys need not ascend)
        dur = float(n) if rng.random() < 0.5 else n - float(rng.uniform(0.0, 0.95))
        pmf = rng.dirichlet(np.full(n + 1, 0.3))
        pmf[rng.random(n + 1) < 0.3] = 0.0
        if pmf.sum() == 0:
            pmf[-1] = 1.0
        pmf = tuple(float(x) for x in pmf / pmf.sum())
        reps = tuple(RepInfo(f"pixel/h264/{k}", "pixel", float(k), (k * 125,) * n,
                             (k / 1000,) * n, {"cpu": 0.01}) for k in (250, 750, 1850))
        feed.append(VideoSpec(f"v{i}", dur, 1.0, n, reps, pmf))
    return feed


def test_fast_chunk_risks_are_bit_identical_to_the_plain_form():
    import dataclasses

    from players.schedulers import _common as cm

    rng = np.random.default_rng(7)
    observations = []
    for _k in range(6):  # observations of real sessions: swipes, playheads, downloads
        feed = _random_feed(rng, 30)
        watch = [float(rng.uniform(0.2, f.duration_s)) for f in feed]
        tr = Trace(np.arange(120) * 0.5, rng.uniform(0.3, 3.0, 120), 0.5)
        simulate_session(feed, watch, tr, Sequential(rep="pixel/h264/750", ahead=3),
                         SimSettings(session_s=40), on_decision=lambda o, a:
                         observations.append(o))
    assert len(observations) > 200
    assert len({(o.current, o.playhead_s) for o in observations}) > 100
    for obs in observations[::2]:
        # and any playhead within the current video
        moved = dataclasses.replace(obs, playhead_s=float(rng.uniform(
            0.0, obs.videos[0].duration_s)))
        for o in (obs, moved):
            for horizon in (25.0, 7.3, 0.4):
                assert cm.chunk_risks(o, horizon) == _ref_chunk_risks(o, horizon)


def test_dashlet_decisions_identical_with_the_plain_risks(monkeypatch):
    from players.schedulers import _common as cm
    from players.schedulers.base import create

    rng = np.random.default_rng(11)
    for k in range(4):
        feed = _random_feed(rng, 40)
        watch = [float(rng.uniform(0.2, f.duration_s)) for f in feed]
        tr = Trace(np.arange(240) * 0.5, rng.uniform(0.3, 4.0, 240), 0.5)
        runs = []
        for risks in (cm.chunk_risks, _ref_chunk_risks):
            monkeypatch.setattr(cm, "chunk_risks", risks)
            decisions = []
            ev = simulate_session(feed, watch, tr, create("dashlet", {}, seed=k),
                                  SimSettings(session_s=90, request_latency_s=0.02),
                                  on_decision=lambda o, a, d=decisions: d.append(a))
            runs.append((decisions, ev))
        assert len(runs[0][0]) > 50
        assert runs[0] == runs[1], k
