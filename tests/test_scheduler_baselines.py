"""The baseline schedulers' decisions on hand-built observations, and their shared helpers."""

from __future__ import annotations

import pytest

from players.schedulers import _common as cm
from players.schedulers import base
from players.schedulers.base import (
    Download,
    InFlight,
    Observation,
    RepInfo,
    VideoView,
    Wait,
    check_action,
)
from players.schedulers.challenge_fixed import conditional_retention
from players.schedulers.challenge_nosave import mpc_choice

LADDER = (100, 250, 500, 1000)


def pixel(kbps, n, nbytes=None):
    return RepInfo(f"pixel/h264/{kbps}", "pixel", float(kbps),
                   (nbytes if nbytes is not None else kbps * 125,) * n, (kbps / 1000,) * n,
                   {"cpu": 0.01})


def video(pos, n=10, pmf=None, downloaded=None, ladder=LADDER, reps=None):
    """A video of n 1-s chunks; default pmf: everyone watches to the end."""
    return VideoView(
        position=pos, video_id=f"v{pos}", duration_s=float(n), chunk_s=1.0, n_chunks=n,
        representations=reps or tuple(pixel(k, n) for k in ladder),
        downloaded=dict(downloaded or {}), decoded=frozenset(downloaded or {}),
        watch_pmf=tuple(pmf) if pmf is not None else (0.0,) * n + (1.0,),
    )


def observe(*videos, playhead_s=0.0, in_flight=(), max_parallel=1, tput_bps=2e6):
    return Observation(
        t_s=10.0, current=videos[0].position, playhead_s=playhead_s, stalled=False,
        videos=tuple(videos), in_flight=tuple(in_flight), max_parallel=max_parallel,
        throughput_bps=tput_bps, devices=(), bytes_downloaded=0,
    )


def have(chunks, rep="pixel/h264/100"):
    return {c: rep for c in chunks}


def decide(sched, obs):
    a = sched.decide(obs)
    check_action(obs, a)
    return a


def fetch_sequence(sched, videos, steps, **kw):
    """Decide ``steps`` times, completing each Download at once; the downloaded targets."""
    vids = {v.position: v for v in videos}
    got = []
    for _ in range(steps):
        obs = observe(*vids.values(), **kw)
        a = decide(sched, obs)
        if isinstance(a, Wait):
            break
        got.append((a.position, a.chunk))
        v = vids[a.position]
        vids[a.position] = video(v.position, v.n_chunks, v.watch_pmf,
                                 {**v.downloaded, a.chunk: a.representation})
    return got


# --------------------------------------------------------------------------- helpers
def test_by_buffer_matches_challenge_thresholds_on_three_rungs():
    three = tuple(pixel(k, 3) for k in (750, 1200, 1850))
    picks = [cm.by_buffer(three, b, 1.0, 2.0).bitrate_kbps for b in (0.0, 1.0, 1.5, 2.0, 2.01)]
    assert picks == [750, 750, 1200, 1200, 1850]  # challenge: > 1000 ms, > 2000 ms
    four = tuple(pixel(k, 3) for k in LADDER)
    assert [cm.by_buffer(four, b, 1.0, 2.0).bitrate_kbps for b in (0.5, 1.2, 1.8, 3)] == \
        [100, 250, 500, 1000]


def test_by_throughput_and_pixel_only_ladder_with_fallback():
    ladder = tuple(pixel(k, 3) for k in LADDER)
    assert cm.by_throughput(ladder, 600e3).bitrate_kbps == 500
    assert cm.by_throughput(ladder, 10e3).bitrate_kbps == 100
    prompt = RepInfo("prompt/local/r8", "prompt", 20.0, (3000, 300, 300), (0.3,) * 3,
                     {"cpu": 0.1})
    mixed = video(0, 3, reps=(pixel(100, 3), prompt))
    assert [r.name for r in cm.pixel_ladder(mixed)] == ["pixel/h264/100"]
    big = RepInfo("prompt/local/r16", "prompt", 40.0, (6000, 600, 600), (0.4,) * 3, {})
    only_prompt = video(0, 3, reps=(big, prompt))
    assert [r.name for r in cm.pixel_ladder(only_prompt)] == ["prompt/local/r8"]


def test_buffers_count_contiguous_chunks_from_the_playhead():
    v = video(0, 10, downloaded=have([0, 1, 2, 4]))
    obs = observe(v, playhead_s=1.5, in_flight=[InFlight(0, 3, "pixel/h264/100", 0, 1, 9.0)],
                  max_parallel=2)
    assert cm.downloaded_ahead_s(obs, v) == pytest.approx(1.5)
    assert cm.fetched_ahead_s(obs, v) == pytest.approx(3.5)
    assert cm.next_missing(obs, v) == 5
    assert cm.next_missing(obs, v, limit=5) is None


def test_robust_throughput_discounts_by_past_error():
    est = cm.RobustThroughput(5)
    assert est.predict(1e6) == 1e6  # no sample yet: the player's estimate
    est.add(2e6)
    assert est.predict(1e6) == pytest.approx(2e6)
    est.add(1e6)  # predicted 2e6, got 1e6: relative error 1.0
    assert est.predict(1e6) == pytest.approx(cm.harmonic_mean([2e6, 1e6]) / 2.0)


def test_start_time_of_next_video_is_the_rest_of_the_current_one():
    # Everyone watches v0 (4 s) to the end; the playhead is at 1 s: v1 starts in 3 s.
    obs = observe(video(0, 4), video(1, 4), playhead_s=1.0)
    dists = cm.start_time_dists(obs, 25.0)
    assert dists[1] == {round(3.0 / cm.GRID_S): pytest.approx(1.0)}
    risks = cm.chunk_risks(obs, 25.0)
    assert risks[(0, 1)] == pytest.approx(25.0)  # under the playhead: needed now, surely
    assert risks[(1, 0)] == pytest.approx(22.0)
    assert (0, 0) not in risks  # already played


# --------------------------------------------------------------------------- no-preload
def test_no_preload_fetches_current_video_in_order_only():
    s = base.create("no-preload")
    cur, nxt = video(0, 6), video(1, 6)
    got = fetch_sequence(s, [cur, nxt], 20)
    assert got == [(0, c) for c in range(6)]
    a = decide(s, observe(video(0, 6, downloaded=have(range(6))), nxt))
    assert isinstance(a, Wait) and a.seconds <= 0.5


def test_no_preload_caps_buffer_and_raises_bitrate_with_buffer():
    s = base.create("no-preload", {"max_buffer_s": 3.0})
    low = decide(s, observe(video(0, 10), video(1)))
    assert low == Download(0, 0, "pixel/h264/100")
    high = decide(s, observe(video(0, 10, downloaded=have([0, 1, 2, 3, 4])), playhead_s=1.5))
    assert isinstance(high, Wait)  # 3.5 s ahead > cap 3 s
    s2 = base.create("no-preload")
    a = decide(s2, observe(video(0, 10, downloaded=have([0, 1, 2, 3, 4])), playhead_s=1.5))
    assert a == Download(0, 5, "pixel/h264/1000")  # 3.5 s downloaded > high 3 s
    full = observe(video(0, 10), in_flight=[InFlight(0, 0, "pixel/h264/100", 0, 1, 9.0)])
    assert isinstance(decide(s2, full), Wait)  # no free connection


# --------------------------------------------------------------------------- fixed
def test_fixed_preloads_first_n_chunks_of_next_k_videos_after_current_buffer():
    s = base.create("fixed", {"preload_s": 3.0, "preload_videos": 2, "buffer_target_s": 2.0,
                              "max_buffer_s": 5.0})
    vids = [video(i, 8) for i in range(4)]
    got = fetch_sequence(s, vids, 40)
    assert got == ([(0, 0), (0, 1)] + [(1, c) for c in range(3)] + [(2, c) for c in range(3)]
                   + [(0, c) for c in range(2, 5)])
    assert all(p != 3 for p, _ in got)  # K = 2: the third next video is left alone


def test_fixed_default_is_four_seconds_of_four_videos():
    p = base.create("fixed").params
    assert (p.preload_s, p.preload_videos) == (4.0, 4)
    cur = video(0, 20, downloaded=have(range(20)))
    got = fetch_sequence(base.create("fixed"), [cur] + [video(i, 10) for i in (1, 2, 3, 4)], 30)
    assert got == [(i, c) for i in (1, 2, 3, 4) for c in range(4)]


# --------------------------------------------------------------------------- challenge-fixed
def test_challenge_fixed_finishes_current_then_preloads_by_retention():
    s = base.create("challenge-fixed")
    # v1: 40% of users leave in second 0, nobody after: retention at 1 s is 0.6 < 0.65.
    leaves_early = (0.4,) + (0.0,) * 9 + (0.6,)
    cur = video(0, 3)
    vids = [cur, video(1, 10, leaves_early), video(2, 10), video(3, 2)]
    got = fetch_sequence(s, vids, 30)
    assert got == [(0, 0), (0, 1), (0, 2), (1, 0), (2, 0), (2, 1), (2, 2), (2, 3),
                   (3, 0), (3, 1)]
    obs = observe(*vids)
    assert conditional_retention(obs, vids[1], 1) == pytest.approx(0.6)
    assert conditional_retention(obs, vids[2], 3) == pytest.approx(1.0)


def test_challenge_fixed_conditions_on_the_playhead_and_uses_buffer_thresholds():
    pmf = (0.0, 0.3, 0.0, 0.3) + (0.0,) * 6 + (0.4,)
    v = video(0, 10, pmf, downloaded=have(range(10)))
    obs = observe(v, playhead_s=2.0)
    # P(watch > 3 | watch > 2) = 0.7 / 0.7 = 1; P(> 4 | > 2) = 0.4 / 0.7
    assert conditional_retention(obs, v, 3) == pytest.approx(1.0)
    assert conditional_retention(obs, v, 4) == pytest.approx(0.4 / 0.7)
    s = base.create("challenge-fixed")
    for n_have, kbps in ((0, 100), (1, 100), (2, 500), (3, 1000)):
        cur = video(0, 10, downloaded=have(range(n_have)))
        assert decide(s, observe(cur)).representation == f"pixel/h264/{kbps}"


# --------------------------------------------------------------------------- challenge-nosave
def test_challenge_nosave_preloads_in_800kb_rounds():
    s = base.create("challenge-nosave")
    big = 500_000  # bytes per chunk at every rung: two chunks pass 800 KB
    reps = tuple(pixel(k, 6, big) for k in LADDER)
    cur = video(0, 3, downloaded=have(range(3)), reps=reps)
    v1 = video(1, 6, downloaded=have([0, 1]), reps=reps)  # 1 MB: round 1 done
    v2 = video(2, 6, downloaded=have([0]), reps=reps)  # 0.5 MB: still in round 1
    a = decide(s, observe(cur, v1, v2))
    assert (a.position, a.chunk) == (2, 1)
    v2 = video(2, 6, downloaded=have([0, 1]), reps=reps)
    a = decide(s, observe(cur, v1, v2))
    assert (a.position, a.chunk) == (1, 2)  # everyone passed round 1: round 2, feed order
    capped = base.create("challenge-nosave", {"max_rounds": 1})
    assert isinstance(decide(capped, observe(cur, v1, v2)), Wait)
    # the current video always goes first
    a = decide(s, observe(video(0, 3, downloaded=have([0]), reps=reps), v1, v2))
    assert (a.position, a.chunk) == (0, 1)


def test_mpc_picks_high_on_fast_link_and_low_on_slow_link():
    ladder = tuple(pixel(k, 10) for k in LADDER)
    fast = mpc_choice(ladder, 0, 10, 1.0, 5.0, 0, 20e6, 5, 1.85, 1.0)
    slow = mpc_choice(ladder, 0, 10, 1.0, 0.0, 0, 150e3, 5, 1.85, 1.0)
    assert ladder[fast].bitrate_kbps == 1000
    assert ladder[slow].bitrate_kbps == 100
    s = base.create("challenge-nosave")
    s.on_chunk_done(None, 0, 0, 12_500, 1.0)  # 100 kbit/s measured
    a = decide(s, observe(video(0, 10), tput_bps=50e6))
    assert a.representation == "pixel/h264/100"  # its own samples beat the player's estimate


# --------------------------------------------------------------------------- dashlet
def test_dashlet_ranks_likely_played_chunk_above_unlikely_one():
    s = base.create("dashlet")
    # v1: 90% swipe within its first second; v2 is watched to its end when it comes.
    swipey = (0.9,) + (0.0,) * 9 + (0.1,)
    cur = video(0, 4, downloaded=have(range(4)))
    obs = observe(cur, video(1, 10, swipey), video(2, 10))
    risks = cm.chunk_risks(obs, 25.0)
    assert risks[(1, 0)] > risks[(2, 0)] > risks[(1, 3)]
    ranked = [(p, c) for _, p, c in s.candidates(obs)]
    assert ranked[0] == (1, 0) and ranked.index((2, 0)) < ranked.index((1, 3))
    a = decide(s, obs)
    assert (a.position, a.chunk) == (1, 0)


def test_dashlet_skips_chunks_beyond_the_horizon_and_waits():
    s = base.create("dashlet", {"horizon_s": 5.0})
    cur = video(0, 30, downloaded=have(range(6)))
    obs = observe(cur, video(1, 10), playhead_s=0.5)
    # everyone watches v0 (30 s) to the end: nothing after 5.5 s of content is at risk
    assert isinstance(decide(s, obs), Wait)
    at_risk = [k for k, r in cm.chunk_risks(obs, 5.0).items() if r > 0]
    assert at_risk and all(pos == 0 and c <= 5 for pos, c in at_risk)


def test_dashlet_target_bitrate_from_throughput_and_candidates_halved_in_danger():
    safe = video(0, 6, downloaded=have(range(6)))
    s = base.create("dashlet", {"horizon_s": 25.0})
    obs = observe(safe, video(1, 6), tput_bps=2e6)
    n = len(s.candidates(obs))  # 6 chunks of v1 (v0 done)
    assert n == 6
    # 25 s * 2 Mbit/s / 6 chunks of 1 s = 8.3 Mbit/s: top rung
    assert decide(s, obs).representation == "pixel/h264/1000"
    slow = observe(safe, video(1, 6), tput_bps=150e3)  # 625 kbit/s: 500
    assert decide(s, slow).representation == "pixel/h264/500"
    danger = observe(video(0, 10, downloaded=have([0, 1])), video(1, 6), tput_bps=300e3)
    # current video: 2 s ahead (< 5 s) with chunks missing: target halved
    n = len(s.candidates(danger))
    target = 25 * 300e3 / n / 2
    a = decide(s, danger)
    assert a.representation == cm.by_throughput(cm.pixel_ladder(danger.videos[0]),
                                                target).name
    assert a.representation != cm.by_throughput(cm.pixel_ladder(danger.videos[0]),
                                                 target * 2).name


def test_params_are_validated_with_the_field_named():
    with pytest.raises(ValueError, match="retention_threshold"):
        base.create("challenge-fixed", {"retention_threshold": 1.5})
    with pytest.raises(ValueError, match="max_buffer_s"):
        base.create("fixed", {"max_buffer_s": 1.0})
    with pytest.raises(ValueError, match="horizon"):
        base.create("challenge-nosave", {"horizon": 0})
    with pytest.raises(ValueError, match="idle_wait_s"):
        base.create("dashlet", {"idle_wait_s": 0})
