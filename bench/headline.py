"""The headline comparison in simulation: no-preload, fixed, dashlet, greedy-compute and
promptpream on real network traces with the real swipe data.

Content: the short-video challenge's 7 videos (real per-chunk sizes at 750/1200/1850 kbps)
with their real retention curves (watch times sampled from them), plus a prompt
representation per chunk from ``testbed.simulator.PROMPT_PROFILES`` (see
docs/simulator.md for where its numbers come from). Traces: challenge network
high/medium/low/mixed and Norway HSDPA (5 each: 25; --quick: 2 each: 10), each replayed from
its start; every scheduler sees the same trace, feed and swipes. Device profiles: cpu-only
(prompts decode on the CPU; decode times of ``codec.profiles`` "cpu-local", measured
here) and npu-like (an extra NPU decodes prompts; ``codec.profiles`` "npu", assumed).

Prints, per device profile, the mean over traces of stall_s (stalls after the first frame),
rebuffer_s (stalls + startup waits), MB wasted, QoE and the challenge score, and promptpream
vs fixed changes. Last line (npu-like profile): ``promptpream_vs_fixed stall <x>% waste <y>%
qoe <z>%`` (stall: rebuffer_s, every wait the viewer sees, as the challenge charges it).

    .venv/bin/python bench/headline.py [--quick] [--jobs 2] [--csv out.csv]
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from concurrent.futures import ProcessPoolExecutor

SCHEDULERS = ("no-preload", "fixed", "dashlet", "greedy-compute", "promptpream")
DATASETS = ("short-video-challenge/network/high", "short-video-challenge/network/medium",
            "short-video-challenge/network/low", "short-video-challenge/network/mixed",
            "hsdpa")
FIELDS = ("stall_s", "rebuffer_s", "bytes_wasted", "waste_ratio", "bytes_downloaded",
          "quality_mbps_mean", "qoe", "challenge_score")


def _one(job: tuple) -> dict:
    import dataclasses

    from players.accounting import summarize
    from players.schedulers.base import create
    from testbed.simulator import (
        CODEC_PROFILE_OF,
        DEVICE_PROFILES,
        PROMPT_PROFILES,
        SimSettings,
        challenge_feed,
        simulate_session,
    )
    from traces.paths import open_trace

    profile, prompt, quality, trace_spec, t_index, scheduler, session_s, seed = job
    devices = DEVICE_PROFILES[profile]
    pp = PROMPT_PROFILES[prompt]
    if quality is not None:
        pp = dataclasses.replace(pp, quality_mbps=quality)
    specs, watch = challenge_feed(400, seed * 1000 + t_index, prompt=pp, devices=devices,
                                  codec_profile=CODEC_PROFILE_OF[profile])
    trace = open_trace(trace_spec)
    t0 = time.perf_counter()
    ev = simulate_session(specs, watch, trace, create(scheduler, {}, seed=seed * 1000 + t_index),
                          SimSettings(session_s=session_s, devices=devices,
                                      request_latency_s=0.02))
    s = summarize(ev)
    s.update(profile=profile, trace=trace_spec, scheduler=scheduler,
             wall_s=time.perf_counter() - t0,
             prompt_share=_prompt_share(ev))
    return s


def _prompt_share(events) -> float:
    played = [e for e in events if e["event"] == "chunk_played"]
    if not played:
        return 0.0
    return sum(e["representation"].startswith("prompt/") for e in played) / len(played)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="2 traces per dataset, 120-s sessions")
    ap.add_argument("--per-dataset", type=int, default=None, help="traces per dataset (5)")
    ap.add_argument("--session-s", type=float, default=None, help="session length (300 s)")
    ap.add_argument("--prompt", default="promptus-r8", help="prompt profile")
    ap.add_argument("--prompt-quality", type=float, default=None,
                    help="override the prompt profile's quality (Mbps-equivalent)")
    ap.add_argument("--profiles", default="cpu-only,npu-like", help="device profiles")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--schedulers", default=",".join(SCHEDULERS),
                    help="comma-separated (must include fixed and promptpream)")
    ap.add_argument("--jobs", type=int, default=2, help="worker processes")
    ap.add_argument("--csv", default=None, help="write per-run rows here")
    args = ap.parse_args(argv)
    from traces.paths import list_traces, trace_dir

    per = args.per_dataset or (2 if args.quick else 5)
    session_s = args.session_s or (120.0 if args.quick else 300.0)
    root = trace_dir()
    if root is None:
        print("headline: no trace directory (set PROMPTBED_TRACES)", file=sys.stderr)
        return 2
    traces = []
    for ds in DATASETS:
        traces += [str(p.relative_to(root)) for p in list_traces(ds)[:per]]
    profiles = args.profiles.split(",")
    schedulers = tuple(args.schedulers.split(","))
    jobs = [(prof, args.prompt, args.prompt_quality, tr, k, sch, session_s, args.seed)
            for prof in profiles for k, tr in enumerate(traces) for sch in schedulers]
    print(f"headline: {len(traces)} traces x {len(schedulers)} schedulers x "
          f"{len(profiles)} device profiles, {session_s:.0f}-s sessions, prompt profile "
          f"{args.prompt}, seed {args.seed}", flush=True)
    t0 = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.jobs) as ex:
        rows = list(ex.map(_one, jobs, chunksize=1))
    print(f"headline: {len(rows)} sessions in {time.perf_counter() - t0:.0f} s wall", flush=True)
    if args.csv:
        with open(args.csv, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    from testbed.simulator import CODEC_PROFILE_OF, PROMPT_PROFILES

    print("decode times: codec.profiles " + ", ".join(
        f"{k} -> {v}" for k, v in CODEC_PROFILE_OF.items() if k in profiles))
    print(f"prompt profile {args.prompt}: {PROMPT_PROFILES[args.prompt].source}"
          + (f"; quality overridden to {args.prompt_quality} Mbps-eq."
             if args.prompt_quality is not None else ""))
    last = ""
    for prof in profiles:
        print(f"\n== device profile {prof} ({len(traces)} traces) ==")
        print(f"{'scheduler':<16}{'stall_s':>9}{'rebuf_s':>9}{'waste_MB':>10}{'waste%':>8}"
              f"{'dl_MB':>8}{'q_mbps':>8}{'QoE':>9}{'score':>9}{'prompt%':>9}")
        mean = {}
        for sch in schedulers:
            rs = [r for r in rows if r["profile"] == prof and r["scheduler"] == sch]
            m = {f: sum(r[f] for r in rs) / len(rs) for f in FIELDS + ("prompt_share",)}
            mean[sch] = m
            print(f"{sch:<16}{m['stall_s']:>9.2f}{m['rebuffer_s']:>9.2f}"
                  f"{m['bytes_wasted'] / 1e6:>10.2f}{100 * m['waste_ratio']:>8.1f}"
                  f"{m['bytes_downloaded'] / 1e6:>8.2f}{m['quality_mbps_mean']:>8.3f}"
                  f"{m['qoe']:>9.1f}{m['challenge_score']:>9.1f}"
                  f"{100 * m['prompt_share']:>9.1f}")
        pp, fx = mean["promptpream"], mean["fixed"]

        def change(a: float, b: float) -> float:
            return 100.0 * (a - b) / abs(b) if b else float("nan")

        line = (f"promptpream_vs_fixed stall {change(pp['rebuffer_s'], fx['rebuffer_s']):+.1f}% "
                f"waste {change(pp['bytes_wasted'], fx['bytes_wasted']):+.1f}% "
                f"qoe {change(pp['qoe'], fx['qoe']):+.1f}%")
        print(f"[{prof}] {line} (stall_s only: "
              f"{change(pp['stall_s'], fx['stall_s']):+.1f}%; greedy-compute vs fixed: "
              + (f"rebuffer {change(mean['greedy-compute']['rebuffer_s'], fx['rebuffer_s']):+.1f}% "
                 f"waste {change(mean['greedy-compute']['bytes_wasted'], fx['bytes_wasted']):+.1f}% "
                 f"qoe {change(mean['greedy-compute']['qoe'], fx['qoe']):+.1f}%)"
                 if "greedy-compute" in mean else "n/a)"))
        if prof == "npu-like" or not last:
            last = line
    print(last)
    return 0


if __name__ == "__main__":
    sys.exit(main())
