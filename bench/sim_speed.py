"""Simulator speed: simulated seconds per wall second for a 10-minute session with each
scheduler, the part of it spent in the scheduler's ``decide``, and PromptPream's decision
time p50/p99 in its two budget modes: the default (``max_iterations`` 64, no clock: the
deterministic mode) and the time-budget mode (``time_budget = true``, ``budget_ms`` 20,
iterations unbounded: the clock alone stops the search; one run, as it is not repeatable).

Content: the short-video challenge videos with the Promptus prompt profile, NPU-like
device profile, trace ``short-video-challenge/network/medium/0``, 20-ms request latency.
Last line: ``sim_speedup <x>``, the slowest baseline's simulated s per wall s (baselines:
no-preload, fixed, dashlet, challenge-fixed, challenge-nosave; decide time included).

    .venv/bin/python bench/sim_speed.py [--session-s 600] [--repeat 3] [--budget-ms 20]
                                        [--no-time-budget]
"""

from __future__ import annotations

import argparse
import sys
import time

BASELINES = ("no-preload", "fixed", "dashlet", "challenge-fixed", "challenge-nosave")
OURS = ("greedy-compute", "promptpream")


def _pct(xs, q):
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * (len(s) - 1) + 0.5))] if s else float("nan")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--session-s", type=float, default=600.0)
    ap.add_argument("--repeat", type=int, default=3, help="runs per scheduler (best kept)")
    ap.add_argument("--trace", default="short-video-challenge/network/medium/0")
    ap.add_argument("--budget-ms", type=float, default=None,
                    help="promptpream budget_ms in the time-budget mode (default: its default)")
    ap.add_argument("--no-time-budget", action="store_true",
                    help="skip the time-budget run of promptpream")
    args = ap.parse_args(argv)

    from players.schedulers.base import available, create
    from testbed.simulator import (
        DEVICE_PROFILES,
        PROMPT_PROFILES,
        SimSettings,
        challenge_feed,
        simulate_session,
    )
    from traces.paths import open_trace

    devices = DEVICE_PROFILES["npu-like"]
    specs, watch = challenge_feed(1000, 1, prompt=PROMPT_PROFILES["promptus-r8"],
                                  devices=devices, codec_profile="npu")
    trace = open_trace(args.trace)
    settings = SimSettings(session_s=args.session_s, devices=devices, request_latency_s=0.02)
    names = [n for n in BASELINES + OURS if n in available()]
    print(f"sim_speed: {args.session_s:.0f}-s session, trace {args.trace}, devices "
          f"{list(devices)}, best of {args.repeat}")
    print(f"{'scheduler':<18}{'wall_s':>8}{'sim_x':>9}{'decide_s':>10}{'sim_only_x':>12}"
          f"{'decisions':>11}{'events':>8}")
    speed = {}
    decision_ms: list[float] = []

    def run(name, params):
        """One session; (wall s, decide s, decisions, events, ms per decision, iterations)."""
        sched = create(name, params, seed=1)
        spent, iters = [], []
        orig = sched.decide

        def timed(obs):
            t0 = time.perf_counter()
            a = orig(obs)
            spent.append(time.perf_counter() - t0)
            iters.append(getattr(sched, "last_iterations", 0))
            return a

        sched.decide = timed
        t0 = time.perf_counter()
        ev = simulate_session(specs, watch, trace, sched, settings)
        wall = time.perf_counter() - t0
        return wall, sum(spent), len(spent), len(ev), [x * 1000 for x in spent], iters

    for name in names:
        best = None
        for _ in range(args.repeat):
            r = run(name, {})
            if best is None or r[0] < best[0]:
                best = r
        wall, dec, n, n_ev, ms, _ = best
        speed[name] = args.session_s / wall
        if name == "promptpream":
            decision_ms = ms
        print(f"{name:<18}{wall:>8.3f}{args.session_s / wall:>9.0f}{dec:>10.3f}"
              f"{args.session_s / max(wall - dec, 1e-9):>12.0f}{n:>11}{n_ev:>8}")
    if decision_ms:
        from players.schedulers.base import get_class

        p = get_class("promptpream").Params()
        print(f"promptpream decision time, default mode (max_iterations={p.max_iterations}, "
              f"depth={p.depth}, time_budget=false): p50 {_pct(decision_ms, 0.5):.2f} ms, "
              f"p99 {_pct(decision_ms, 0.99):.2f} ms, max {max(decision_ms):.2f} ms over "
              f"{len(decision_ms)} decisions")
        if not args.no_time_budget:
            budget = args.budget_ms if args.budget_ms is not None else p.budget_ms
            wall, dec, n, _, ms, iters = run("promptpream", {
                "time_budget": True, "budget_ms": budget, "max_iterations": 10**9})
            searched = sorted(i for i in iters if i > 0)
            print(f"promptpream decision time, time-budget mode (budget_ms={budget:g}, "
                  f"max_iterations unbounded; one run): p50 {_pct(ms, 0.5):.2f} ms, "
                  f"p99 {_pct(ms, 0.99):.2f} ms, max {max(ms):.2f} ms over {n} decisions; "
                  f"iterations p50 {_pct(searched, 0.5)}, p1 {_pct(searched, 0.01)} "
                  f"({len(searched)} searched); {args.session_s / wall:.0f} simulated s "
                  f"per wall s")
    base = [speed[n] for n in BASELINES if n in speed]
    print(f"sim_speedup {min(base):.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
