"""The headline comparison: no-preload, fixed, dashlet, greedy-compute and promptpream on
real network traces with the real swipe data, in simulation (all traces) and in emulation
(a subset, real players).

Simulation. Content: the short-video challenge's 7 videos (real per-chunk sizes at
750/1200/1850 kbps) with their real retention curves (watch times sampled from them), plus a
prompt representation per chunk from ``testbed.simulator.PROMPT_PROFILES`` (see
docs/simulator.md for where its numbers come from). Traces: challenge network
high/medium/low/mixed and Norway HSDPA (5 each: 25; --quick: 2 each: 10), each replayed from
its start; every scheduler sees the same trace, feed and swipes. Device profiles: cpu-only
(prompts decode on the CPU; decode times of ``codec.profiles`` "cpu-local", measured
here) and npu-like (an extra NPU decodes prompts; ``codec.profiles`` "npu", assumed).

Emulation (``--emu``, the default without --quick): ``configs/headline-emu.toml`` run by
``testbed run`` (real origin, real player processes, Mininet as root), its first
``--emu-traces`` real traces (one player each), on a catalog that has prompt
representations of this project's codec (``prompt/local/r8``, prepared on first use). Each
``--emu-variants`` entry is a device profile, optionally ``@Q``: cpu-only = prompts decoded
for real on this CPU (``device_profile = "measured"``); npu-like = devices cpu + npu with
``codec.profiles`` "npu" latencies held (``decode = "profile"``: no NPU here); ``@Q`` = the
computation-aware schedulers value prompt chunks at Q Mbps-eq. (their
``prompt_quality_mbps``; the local model's own quality-equivalent is 0, so without it they
see no gain in prompts), while the accounting still charges the manifest's 0. Each
emulated variant is also simulated (same config, ``testbed simulate``) for comparison.

Prints, per device profile, the mean over traces (players) of stall_s (stalls after the
first frame), rebuffer_s (stalls + startup waits), MB wasted, QoE and the challenge score,
and promptpream vs fixed changes, for the simulation and for each emulated variant. Last
line: the simulation's (npu-like profile) ``promptpream_vs_fixed stall <x>% waste <y>%
qoe <z>%`` (stall: rebuffer_s, every wait the viewer sees, as the challenge charges it);
the emulated ratios are on the ``emu[...]`` lines before it.

    .venv/bin/python bench/headline.py [--quick] [--jobs 2] [--csv out.csv]
        [--emu | --no-emu] [--emu-traces 4] [--emu-variants cpu-only,cpu-only@0.45,npu-like@0.45]
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
EMU_CONFIG = REPO / "configs" / "headline-emu.toml"
COMPUTE_AWARE = ("greedy-compute", "promptpream")

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


def _change(a: float, b: float) -> float:
    return 100.0 * (a - b) / abs(b) if b else float("nan")


def print_table(title: str, rows: list[dict], schedulers) -> tuple[dict, str]:
    """Per-scheduler means of ``rows`` (summary dicts with ``scheduler`` and
    ``prompt_share``); returns them and the promptpream-vs-fixed line."""
    print(f"\n== {title} ==")
    print(f"{'scheduler':<16}{'stall_s':>9}{'rebuf_s':>9}{'waste_MB':>10}{'waste%':>8}"
          f"{'dl_MB':>8}{'q_mbps':>8}{'QoE':>9}{'score':>9}{'prompt%':>9}")
    mean = {}
    for sch in schedulers:
        rs = [r for r in rows if r["scheduler"] == sch]
        if not rs:
            continue
        m = {f: sum(float(r[f]) for r in rs) / len(rs) for f in FIELDS + ("prompt_share",)}
        mean[sch] = m
        print(f"{sch:<16}{m['stall_s']:>9.2f}{m['rebuffer_s']:>9.2f}"
              f"{m['bytes_wasted'] / 1e6:>10.2f}{100 * m['waste_ratio']:>8.1f}"
              f"{m['bytes_downloaded'] / 1e6:>8.2f}{m['quality_mbps_mean']:>8.3f}"
              f"{m['qoe']:>9.1f}{m['challenge_score']:>9.1f}"
              f"{100 * m['prompt_share']:>9.1f}")
    if "promptpream" not in mean or "fixed" not in mean:
        return mean, ""
    pp, fx = mean["promptpream"], mean["fixed"]
    line = (f"promptpream_vs_fixed stall {_change(pp['rebuffer_s'], fx['rebuffer_s']):+.1f}% "
            f"waste {_change(pp['bytes_wasted'], fx['bytes_wasted']):+.1f}% "
            f"qoe {_change(pp['qoe'], fx['qoe']):+.1f}%")
    gc = mean.get("greedy-compute")
    print(f"{line} (stall_s only: {_change(pp['stall_s'], fx['stall_s']):+.1f}%; "
          "greedy-compute vs fixed: "
          + (f"rebuffer {_change(gc['rebuffer_s'], fx['rebuffer_s']):+.1f}% "
             f"waste {_change(gc['bytes_wasted'], fx['bytes_wasted']):+.1f}% "
             f"qoe {_change(gc['qoe'], fx['qoe']):+.1f}%)" if gc else "n/a)"))
    return mean, line


def parse_variant(text: str) -> tuple[str, float | None]:
    """``cpu-only`` or ``npu-like@0.45`` -> (profile, prompt quality the computation-aware
    schedulers assume, or None)."""
    from testbed.simulator import PLAYER_DEVICE_SETTINGS

    prof, _, q = text.partition("@")
    if prof not in PLAYER_DEVICE_SETTINGS:
        raise SystemExit(f"headline: --emu-variants: unknown device profile {prof!r}; "
                         f"expected one of {sorted(PLAYER_DEVICE_SETTINGS)}, "
                         f"optionally @<Mbps-eq.>")
    try:
        return prof, (float(q) if q else None)
    except ValueError:
        raise SystemExit(f"headline: --emu-variants: {text!r}: expected a number after @") from None


def emu_config(variant: str, n_traces: int, session_s: float | None, schedulers):
    """``configs/headline-emu.toml`` for one emulated variant."""
    import tomllib

    from testbed.config import config_from_dict
    from testbed.simulator import PLAYER_DEVICE_SETTINGS

    prof, quality = parse_variant(variant)
    data = tomllib.loads(EMU_CONFIG.read_text(encoding="utf-8"))
    traces = data["network"]["traces"]
    if not 1 <= n_traces <= len(traces):
        raise SystemExit(f"headline: --emu-traces: expected 1..{len(traces)} "
                         f"({EMU_CONFIG.name} has {len(traces)} traces), got {n_traces}")
    data["name"] = "headline-emu-" + variant.replace("@", "-q")
    data["network"]["traces"] = traces[:n_traces]
    data["players"].update(PLAYER_DEVICE_SETTINGS[prof], count=n_traces)
    if session_s is not None:
        data["session"]["duration_s"] = session_s
    data["schedulers"] = [
        {"name": sch, **({"params": {"prompt_quality_mbps": quality}}
                         if quality is not None and sch in COMPUTE_AWARE else {})}
        for sch in schedulers]
    return config_from_dict(data, str(EMU_CONFIG))


def run_rows(path) -> list[dict]:
    """Summary rows of a run directory, each with the share of played chunks that were
    prompts."""
    from testbed.results import open_run

    rd = open_run(path)
    rows = rd.summary_rows()
    for r in rows:
        r["prompt_share"] = _prompt_share(list(rd.events(r["scheduler"], int(r["player"]))))
    return rows


def emulate(variant: str, args, schedulers, out: Path) -> tuple[list, list, Path, float]:
    """One emulated variant and its simulated twin: (emu rows, sim rows, run dir, wall s)."""
    from testbed.run import run_experiment
    from testbed.simulator import simulate_experiment

    cfg = emu_config(variant, args.emu_traces, args.emu_session_s, schedulers)
    t0 = time.perf_counter()
    path = run_experiment(cfg, out, backend=args.emu_backend, progress=False, plots=False,
                          argv=["bench/headline.py", *(args.argv or [])])
    wall = time.perf_counter() - t0
    sim = simulate_experiment(cfg, out, progress=False, plots=False)
    return run_rows(path), run_rows(sim), path, wall


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="2 traces per dataset, 120-s sessions, no emulation unless --emu")
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
    ap.add_argument("--emu", action=argparse.BooleanOptionalAction, default=None,
                    help="also run the emulated subset (default: yes, no with --quick)")
    ap.add_argument("--emu-traces", type=int, default=4,
                    help=f"emulated traces, one player each (the first N of {EMU_CONFIG.name})")
    ap.add_argument("--emu-variants", default="cpu-only,cpu-only@0.45,npu-like@0.45",
                    help="emulated device profiles (cpu-only, npu-like), each optionally "
                         "@Q: greedy-compute and promptpream value prompts at Q Mbps-eq.")
    ap.add_argument("--emu-session-s", type=float, default=None,
                    help=f"emulated session length (default: {EMU_CONFIG.name}'s, 60 s)")
    ap.add_argument("--emu-backend", default="auto", choices=["auto", "mininet", "userspace"])
    ap.add_argument("--emu-out", type=Path, default=None,
                    help="results root of the emulated runs (default: a temp dir)")
    args = ap.parse_args(argv)
    args.argv = list(argv) if argv is not None else sys.argv[1:]
    from traces.paths import list_traces, trace_dir

    per = args.per_dataset or (2 if args.quick else 5)
    session_s = args.session_s or (120.0 if args.quick else 300.0)
    emu = (not args.quick) if args.emu is None else args.emu
    variants = [v for v in args.emu_variants.split(",") if v] if emu else []
    for v in variants:
        parse_variant(v)  # fail before the long part
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
        _, line = print_table(f"simulation, device profile {prof} ({len(traces)} traces)",
                              [r for r in rows if r["profile"] == prof], schedulers)
        if prof == "npu-like" or not last:
            last = line

    emu_lines = []
    if variants:
        out = args.emu_out or Path(tempfile.mkdtemp(prefix="headline-emu-"))
        print(f"\nheadline: emulating {len(variants)} variant(s) x {len(schedulers)} "
              f"schedulers x {args.emu_traces} traces ({EMU_CONFIG.name}, backend "
              f"{args.emu_backend}) into {out}", flush=True)
        from testbed.results import open_run

        t_emu = time.perf_counter()
        for v in variants:
            erows, srows, path, wall = emulate(v, args, schedulers, out)
            meta = open_run(path).metadata()
            _, quality = parse_variant(v)
            what = (f"devices {meta.get('devices')}, device_profile "
                    f"{meta.get('device_profile')!r}, decode "
                    f"{meta['config']['players']['decode']!r}"
                    + (f", greedy-compute/promptpream prompt_quality_mbps={quality:g}"
                       if quality is not None else ", prompt quality from the manifest"))
            print(f"\nemulated {v}: {meta.get('backend')} backend, {wall:.0f} s wall, "
                  f"{what}; catalog {meta['catalog']['dir']}; run {path}")
            _, eline = print_table(f"emulation {v} ({args.emu_traces} traces)", erows,
                                   schedulers)
            _, sline = print_table(f"simulation of the same config, {v}", srows, schedulers)
            emu_lines.append(f"emu[{v}] {eline}  (its simulation: {sline})")
        print(f"\nheadline: emulation {time.perf_counter() - t_emu:.0f} s wall in all")
    print()
    for line in emu_lines:
        print(line)
    print(last)
    return 0


if __name__ == "__main__":
    sys.exit(main())
