"""The baselines on the short-video challenge's own data: its 7 videos (real per-chunk sizes
at 750/1200/1850 kbps, real retention curves) over three of its network traces, driven by the
contract test's event loop. Checks what each scheduler promises in its docstring, on every
download it made: what it fetched, and from which video. Skipped without a trace directory.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from test_scheduler_contract import drive

from players.accounting import summarize
from players.schedulers import base
from players.schedulers.base import RepInfo
from players.session import VideoSpec

traces_paths = pytest.importorskip("traces.paths")
ROOT = traces_paths.trace_dir()
CHALLENGE = ROOT / "short-video-challenge" if ROOT else None
BASELINES = ("no-preload", "fixed", "challenge-fixed", "challenge-nosave", "dashlet")
pytestmark = pytest.mark.skipif(CHALLENGE is None or not CHALLENGE.is_dir(),
                                reason="no trace directory with the short-video challenge data")


def challenge_videos() -> dict[str, tuple[VideoSpec, object]]:
    from traces.swipe import load_retention

    out = {}
    for d in sorted((CHALLENGE / "video-sizes").iterdir()):
        sizes = [[int(x) for x in (d / f"video_size_{lvl}").read_text().split()]
                 for lvl in range(3)]
        n = len(sizes[0])
        reps = tuple(RepInfo(f"pixel/h264/{k}", "pixel", float(k), tuple(sizes[lvl]),
                             (k / 1000,) * n, {"cpu": 0.02})
                     for lvl, k in enumerate((750, 1200, 1850)))
        dist = load_retention(CHALLENGE / "user-retention" / d.name)
        out[d.name] = (VideoSpec(d.name, float(n), 1.0, n, reps, tuple(dist.pmf)), dist)
    return out


@pytest.fixture(scope="module")
def sessions():
    """{scheduler: [(feed, events)]} over network/{medium,low,high}/0, 90-s sessions."""
    from traces.formats import load
    from traces.swipe import sample_watch_times

    videos = challenge_videos()
    names = sorted(videos)
    out = {n: [] for n in BASELINES}
    for k, trace_name in enumerate(("medium/0", "low/0", "high/0")):
        order = [names[i] for i in np.random.default_rng(k).integers(0, len(names), 30)]
        feed = [videos[o][0] for o in order]
        watch = sample_watch_times([videos[o][1] for o in order], k)
        trace = load(CHALLENGE / "network" / trace_name)
        for name, runs in out.items():
            _, m, ev = drive(base.create(name, seed=k), feed, watch, link=trace,
                             max_parallel=1, session_s=90.0, max_decisions=50_000)
            assert m.ended
            runs.append((feed, ev))
    return out


def downloads(ev):
    """[(current position when it started, download_start event)]."""
    cur, out = 0, []
    for e in ev:
        if e["event"] == "video_start":
            cur = e["position"]
        elif e["event"] == "download_start":
            out.append((cur, e))
    return out


def test_no_preload_fetches_only_the_video_on_screen(sessions):
    for _, ev in sessions["no-preload"]:
        d = downloads(ev)
        assert d and all(e["position"] == cur for cur, e in d)


def test_fixed_and_challenge_fixed_preload_only_the_first_four_chunks(sessions):
    for name in ("fixed", "challenge-fixed"):
        for _feed, ev in sessions[name]:
            pre = [e for cur, e in downloads(ev) if e["position"] > cur]
            assert pre, f"{name} preloaded nothing"
            assert all(e["chunk"] < 4 for e in pre)
            assert all(e["position"] - cur <= 4 for cur, e in downloads(ev))


def test_challenge_fixed_preloads_only_chunks_with_retention_above_threshold(sessions):
    for feed, ev in sessions["challenge-fixed"]:
        for cur, e in downloads(ev):
            if e["position"] > cur:
                v = feed[e["position"]]
                reach = 1.0 - sum(v.watch_pmf[: e["chunk"]])
                assert reach > 0.65, (v.video_id, e["chunk"], reach)


def test_challenge_baselines_finish_current_video_before_preloading(sessions):
    for name in ("challenge-fixed", "challenge-nosave"):
        for feed, ev in sessions[name]:
            started: set[tuple[int, int]] = set()
            n_pre = 0
            for cur, e in downloads(ev):
                if e["position"] > cur:
                    n_pre += 1
                    # a chunk plays only once downloaded, so "all of the current video was
                    # requested" is the whole video's chunks, whatever the playhead
                    assert all((cur, c) in started for c in range(feed[cur].n_chunks)), name
                started.add((e["position"], e["chunk"]))
            assert n_pre > 0, f"{name} preloaded nothing"


def rnd(got: dict[int, int], pos: int) -> int:
    """The 800-KB round a video is in, given the bytes requested for it so far."""
    return got.get(pos, 0) // 800_000 + 1


def test_challenge_nosave_preloads_round_robin_in_800kb_steps(sessions):
    rounds_seen = set()
    for feed, ev in sessions["challenge-nosave"]:
        got: dict[int, int] = {}  # position -> bytes requested (one connection: all complete)
        count: dict[int, int] = {}
        for cur, e in downloads(ev):
            pos = e["position"]
            if pos > cur:
                open_ = [p for p in range(cur + 1, min(cur + 5, len(feed)))
                         if count.get(p, 0) < feed[p].n_chunks]
                assert rnd(got, pos) == min(rnd(got, p) for p in open_)
                assert pos == min(p for p in open_ if rnd(got, p) == rnd(got, pos))
                rounds_seen.add(rnd(got, pos))
            got[pos] = got.get(pos, 0) + e["bytes_total"]
            count[pos] = count.get(pos, 0) + 1
    assert {1, 2} <= rounds_seen  # on the fast trace it goes past the first 800 KB


def test_summaries_are_finite_and_every_scheduler_plays(sessions):
    for name, runs in sessions.items():
        for _, ev in runs:
            s = summarize(ev)
            assert s["bytes_played"] > 0 and s["videos_started"] >= 2, name
            assert all(math.isfinite(float(s[k])) for k in ("stall_s", "qoe", "waste_ratio"))


def compare(category: str = "medium", n_traces: int = 10, connections: int = 1,
            session_s: float = 120.0) -> str:
    """Table of the baselines on network/<category>/0..n-1 (40-video feeds, seed = trace
    index; the contract driver: processor-sharing link, no RTT, 20-ms decode)."""
    import statistics

    from traces.formats import load
    from traces.swipe import sample_watch_times

    videos = challenge_videos()
    names = sorted(videos)
    rows = {n: [] for n in base.available()}
    for k in range(n_traces):
        order = [names[i] for i in np.random.default_rng(k).integers(0, len(names), 40)]
        feed = [videos[o][0] for o in order]
        watch = sample_watch_times([videos[o][1] for o in order], k)
        trace = load(CHALLENGE / "network" / category / str(k))
        for name, summaries in rows.items():
            _, _, ev = drive(base.create(name, seed=k), feed, watch, link=trace,
                             max_parallel=connections, session_s=session_s,
                             max_decisions=200_000)
            summaries.append(summarize(ev))
    out = [(f"network/{category}/0..{n_traces - 1}, {session_s:.0f}-s sessions, "
            f"{connections} connection(s); means over traces"),
           (f"{'scheduler':18s} {'stall_s':>8s} {'startup_s':>9s} {'MB_down':>8s} "
            f"{'waste':>6s} {'q_Mbps':>7s} {'QoE':>7s} {'score':>7s}")]
    for name, rs in rows.items():
        def m(key, rs=rs):
            return statistics.mean(float(r[key]) for r in rs)
        out.append(f"{name:18s} {m('stall_s'):8.2f} {m('startup_s_mean'):9.3f} "
                   f"{m('bytes_downloaded') / 1e6:8.2f} {m('waste_ratio'):6.3f} "
                   f"{m('quality_mbps_mean'):7.3f} {m('qoe'):7.1f} {m('challenge_score'):7.1f}")
    return "\n".join(out)


if __name__ == "__main__":
    # python tests/test_scheduler_real_data.py [category [n_traces [connections]]]
    import sys

    args = sys.argv[1:]
    print(compare(args[0] if args else "medium", int(args[1]) if len(args) > 1 else 10,
                  int(args[2]) if len(args) > 2 else 1))
