"""PromptPream's search and the shared cost model: determinism under a seed, the pruning
rules, and that pruning never removes the only legal action."""

import random

import numpy as np
import pytest

from players.schedulers._costmodel import Context, CostParams, prune
from players.schedulers.base import Download, RepInfo, Wait, check_action, create
from players.session import SessionModel, VideoSpec
from testbed.simulator import SimSettings, simulate_session
from traces.trace import Trace

PIX = "pixel/h264/1000"
LOW = "pixel/h264/250"
PROMPT = "prompt/local/r8"


def spec(vid, n=6, prompt_q=1.0, prompt_cpu_s=0.3, pmf=None, pixel_q=1.0):
    reps = (
        RepInfo(LOW, "pixel", 250.0, (31_250,) * n, (0.25,) * n, {"cpu": 0.01}),
        RepInfo(PIX, "pixel", 1000.0, (125_000,) * n, (pixel_q,) * n, {"cpu": 0.01}),
        RepInfo(PROMPT, "prompt", 50.0, (6_000,) * n, (prompt_q,) * n,
                {"cpu": prompt_cpu_s, "npu": prompt_cpu_s / 5}),
    )
    pmf = pmf or tuple([0.06] * n + [1.0 - 0.06 * n])
    return VideoSpec(vid, float(n), 1.0, n, reps, pmf)


def model(feed, watch=None, devices=("cpu", "npu"), **kw):
    watch = watch or [f.duration_s for f in feed]
    return SessionModel(feed, watch, emit=lambda e: None, devices=devices, **kw)


def random_trace(seed, n=240):
    rng = np.random.default_rng(seed)
    return Trace(np.arange(n) * 0.5, rng.uniform(0.2, 4.0, n), 0.5)


def test_mcts_same_seed_same_decisions_and_events():
    feed = [spec(f"v{i}", n=4 + i % 5) for i in range(12)]
    rng = random.Random(5)
    watch = [rng.uniform(0.3, f.duration_s) for f in feed]
    logs = []
    for _ in range(2):
        sched = create("promptpream", {"max_iterations": 24}, seed=11)
        decisions = []
        ev = simulate_session(feed, watch, random_trace(2), sched,
                              SimSettings(session_s=40, devices=("cpu", "npu")),
                              on_decision=lambda o, a, d=decisions: d.append(a))
        logs.append((decisions, ev))
    assert logs[0] == logs[1]
    assert any(isinstance(a, Download) and a.representation == PROMPT for a in logs[0][0])


def test_mcts_uses_at_most_max_iterations_and_time_budget_stops_early():
    feed = [spec(f"v{i}") for i in range(6)]
    obs = model(feed).observation()
    s = create("promptpream", {"max_iterations": 7})
    check_action(obs, s.decide(obs))
    assert 1 <= s.last_iterations <= 7
    t = create("promptpream", {"max_iterations": 10**6, "time_budget": True,
                               "budget_ms": 5.0})
    check_action(obs, t.decide(obs))
    assert 1 <= t.last_iterations < 10**6


def test_params_are_validated_with_names():
    with pytest.raises(ValueError, match="depth"):
        create("promptpream", {"depth": 0})
    with pytest.raises(ValueError, match="horizon_s"):
        create("greedy-compute", {"horizon_s": 0})
    with pytest.raises(ValueError, match="unknown parameter"):
        create("promptpream", {"nope": 1})


def _by_key(cands):
    return {(c.position, c.chunk, c.rep.name, c.device) for c in cands}


def test_prune_drops_pixel_when_equal_prompt_fits_and_keeps_it_when_prompt_is_worse():
    # Video 1's first chunk is needed seconds from now: both fit its deadline.
    obs = model([spec("v0", prompt_q=1.0), spec("v1", prompt_q=1.0)]).observation()
    ctx = Context(obs, CostParams())
    kept = _by_key(prune(ctx, ctx.candidates()))
    assert (1, 0, PROMPT, "npu") in kept
    assert not any(k[0] == 1 and k[2] == PIX for k in kept)
    # device dominance: the prompt is kept on its fastest device only
    assert (1, 0, PROMPT, "cpu") not in kept
    obs = model([spec("v0", prompt_q=0.5), spec("v1", prompt_q=0.5)]).observation()
    ctx = Context(obs, CostParams())
    kept = _by_key(prune(ctx, ctx.candidates()))
    assert (1, 0, PIX, "cpu") in kept and (1, 0, PROMPT, "npu") in kept


def test_prune_drops_what_misses_the_deadline_and_chunks_beyond_the_horizon():
    # On a 200-kbit/s link the 1000-kbps chunk of the next video cannot be there by the
    # time it is expected on screen; the 250-kbps one can, and so can the prompt, which is
    # better than 250 kbps (0.3 vs 0.25 Mbps-equivalent) and so also cuts the low rung.
    m = model([spec("v0", prompt_q=0.3, prompt_cpu_s=0.2), spec("v1", prompt_q=0.3)],
              initial_throughput_bps=200_000)
    ctx = Context(m.observation(), CostParams(horizon_s=4.0))
    cands = ctx.candidates(per_video=6)
    before = {c.rep.name for c in cands if c.position == 1 and c.chunk == 0}
    assert before == {LOW, PIX, PROMPT}
    pix = next(c for c in cands if (c.position, c.chunk, c.rep.name) == (1, 0, PIX))
    assert pix.ready_s > pix.deadline_s
    kept = prune(ctx, cands)
    assert [c.rep.name for c in kept if c.position == 1 and c.chunk == 0] == [PROMPT]
    # chunks first needed at or beyond the 4-s horizon are gone
    assert all(ctx.need(c.index, c.chunk)[3] < 4.0 for c in kept)
    assert any(ctx.need(c.index, c.chunk)[3] >= 4.0 for c in cands)


def test_pruning_never_removes_the_only_legal_action():
    # One legal download left: everything else is downloaded; its chunk is beyond the
    # horizon and unlikely to be played, which the rules alone would cut.
    n = 30
    feed = [spec("v0", n=n, pmf=tuple([0.9 / n] * n + [0.1]))]
    m = model(feed, devices=("cpu",))
    for c in range(n - 1):
        m.start_download(0, c, LOW)
        m.finish_download(0, c)
    obs = m.observation()
    ctx = Context(obs, CostParams(horizon_s=2.0))
    only = [c for c in ctx.candidates() if c.rep.name == LOW]
    assert len(only) == 1
    kept = prune(ctx, only)
    assert _by_key(kept) == _by_key(only)


def test_pruning_keeps_something_on_random_observations():
    rng = random.Random(0)
    for trial in range(40):
        feed = [spec(f"v{i}", n=rng.randint(2, 8), prompt_q=rng.uniform(0.1, 1.5),
                     prompt_cpu_s=rng.uniform(0.05, 2.0)) for i in range(6)]
        m = model(feed, devices=rng.choice([("cpu",), ("cpu", "npu")]),
                  initial_throughput_bps=rng.uniform(1e5, 1e7), max_parallel=3)
        for _ in range(rng.randint(0, 6)):
            pos, c = rng.randrange(3), rng.randrange(2)
            if (pos, c) not in m.in_flight and c not in m.downloaded[pos]:
                m.start_download(pos, c, rng.choice([LOW, PIX, PROMPT]))
        obs = m.observation()
        ctx = Context(obs, CostParams(horizon_s=rng.uniform(0.5, 20), min_p_played=0.5))
        cands = ctx.candidates()
        kept = prune(ctx, cands)
        assert bool(kept) == bool(cands), trial
        assert _by_key(kept) <= _by_key(cands)
        for sched in ("promptpream", "greedy-compute"):
            a = create(sched, {}).decide(obs)
            check_action(obs, a)


def test_greedy_waits_when_nothing_is_worth_fetching():
    # Everything of the only video is downloaded: nothing to fetch.
    feed = [spec("v0", n=2)]
    m = model(feed, devices=("cpu",))
    for c in range(2):
        m.start_download(0, c, LOW)
        m.finish_download(0, c)
    obs = m.observation()
    assert isinstance(create("greedy-compute", {}).decide(obs), Wait)
    assert isinstance(create("promptpream", {}).decide(obs), Wait)


@pytest.mark.parametrize("name", ["greedy-compute", "promptpream"])
def test_ample_bandwidth_no_swipe_no_stall_and_no_waste(name):
    # Everybody watches to the end on a 50-Mbit/s link: nothing stalls after the first
    # frame, nothing is wasted, and the top quality is played.
    feed = [spec(f"v{i}", n=5, pmf=(0.0,) * 5 + (1.0,)) for i in range(4)]
    tr = Trace(np.array([0.0]), np.array([50.0]), 1000.0)
    ev = simulate_session(feed, [5.0] * 4, tr, create(name, {}, seed=3),
                          SimSettings(session_s=60, devices=("cpu", "npu"),
                                      request_latency_s=0.01))
    from players.accounting import summarize

    s = summarize(ev)
    assert s["stall_s"] == 0.0 and s["bytes_wasted"] == 0
    assert s["play_s"] == pytest.approx(20.0)
    assert s["quality_mbps_mean"] == pytest.approx(1.0)


def test_stored_node_values_equal_the_max_backup_from_scratch():
    # Node values are updated along each backed-up path only; recomputed over the whole
    # tree they must be the same: a leaf's mean, else the best visited child's value.
    import math

    import players.schedulers.promptpream as ppm

    def from_scratch(n):
        kids = [ch for ch in (n.children or ()) if ch.visits]
        if not kids:
            return n.total / n.visits if n.visits else -math.inf
        return max(from_scratch(ch) for ch in kids)

    roots = []
    orig = ppm._Node

    class Recording(orig):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            roots.append(self)

    feed = [spec(f"v{i}", n=5) for i in range(6)]
    obs = model(feed, initial_throughput_bps=2e6).observation()
    ppm._Node = Recording
    try:
        s = create("promptpream", {"max_iterations": 200}, seed=4)
        check_action(obs, s.decide(obs))
    finally:
        ppm._Node = orig
    visited = [n for n in roots if n.visits]
    assert s.last_iterations == 200 and len(visited) > 50
    assert all(n.value == from_scratch(n) for n in visited)


@pytest.mark.parametrize("name", ["greedy-compute", "promptpream"])
def test_prompt_quality_override_values_prompts_the_manifest_calls_worthless(name):
    # The manifest gives the prompt quality 0 (as for the local model): the next video's
    # chunk is fetched as pixels. Valued at 1 Mbps-eq. (= the top rung), the prompt
    # dominates the pixel representations and is fetched instead.
    feed = [spec(f"v{i}", prompt_q=0.0) for i in range(3)]
    m = model(feed)
    for c in range(6):  # the current video is all there
        m.start_download(0, c, PIX)
        m.finish_download(0, c)
    obs = m.observation()
    plain = create(name, {}, seed=1).decide(obs)
    told = create(name, {"prompt_quality_mbps": 1.0}, seed=1).decide(obs)
    check_action(obs, plain)
    check_action(obs, told)
    assert isinstance(plain, Download) and plain.representation != PROMPT
    assert isinstance(told, Download) and told.representation == PROMPT
    with pytest.raises(ValueError, match="prompt_quality_mbps"):
        create(name, {"prompt_quality_mbps": -1.0})
