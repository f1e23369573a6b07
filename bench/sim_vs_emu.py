"""Cross-validation: the same config in emulation (``testbed run``) and in simulation
(``testbed simulate``); per scheduler the mean stall, rebuffer and waste from both and the
relative gaps.

Two cases. Default: a pixel-only catalog (``results/catalogs/simvsemu``), all five
schedulers. ``--prompts``: the catalog of ``configs/headline-emu.toml``, which has prompt
representations of this project's codec (``prompt/local/r8``), with greedy-compute and
promptpream only, so that their computation-aware paths (prompt downloads, decode devices)
are compared. Its prompts' quality-equivalent bitrate is 0, with which these schedulers
never fetch one, so they value prompts at ``--prompt-quality`` Mbps-eq. (their
``prompt_quality_mbps``; default 0.45, the simulation headline's assumption). The case
runs once per ``--devices`` entry: cpu-only (prompts decoded for real on this CPU; the
simulator takes the catalog's measured decode time) and npu-like (devices cpu + npu,
``codec.profiles`` "npu" latencies held by the players, ``decode = "profile"``, and the
same latencies in the simulator). The measured prompt decode times of both are printed.

Three simulator variants: ``sim-default`` (what ``testbed simulate`` does with this config:
request latency 2 x network.delay_ms = 0, no queue: pure fair sharing), ``sim-latency``
(request latency calibrated from the emulated run itself: the 10th percentile of its
request-to-first-byte times; not the median, which also holds the wait behind other
downloads' queued bytes) and ``sim-latency-queue`` (plus ``queue_bytes`` = the emulated
queue, network.queue_packets x 1500 B); where the emulated prompt decodes took more than
10% longer or shorter than the simulator's (medians), also ``sim-latency-decode``
(``sim-latency`` with ``simulator.decode_scale`` = that ratio). The last line reports
``sim-default``. Gaps are
``|sim - emu| / max(|emu|, floor)`` with a floor (0.5 s for times, 100 KB for bytes) so
near-zero values do not turn into huge percentages; the raw values are printed beside.
Last line: ``worst_gap <x>%`` over schedulers (and device profiles) and the two headline
metrics (rebuffer_s, bytes_wasted).

    .venv/bin/python bench/sim_vs_emu.py [--quick] [--backend userspace|mininet|auto]
        [--prompts [--devices cpu-only,npu-like] [--prompt-quality 0.45]]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SCHEDULERS = ("no-preload", "fixed", "dashlet", "greedy-compute", "promptpream")
COMPUTE_AWARE = ("greedy-compute", "promptpream")
HEADLINE = "sim-default"  # the variant the last line reports: testbed simulate's defaults
METRICS = (("rebuffer_s", 0.5), ("stall_s", 0.5), ("bytes_wasted", 100_000))
PROMPT_CONFIG = REPO / "configs" / "headline-emu.toml"  # its catalog has prompts


def config(quick: bool, catalog: Path, backend: str) -> dict:
    return {
        "name": "simvsemu", "seed": 1, "mode": "serial",
        "session": {"duration_s": 30.0 if quick else 60.0, "max_parallel": 2,
                    "decide_interval_s": 0.5},
        "catalog": {"dir": str(catalog), "count": 5, "min_duration_s": 8.0,
                    "max_duration_s": 20.0, "ladder_kbps": [250, 500, 1000]},
        "feed": {"length": 30, "swipe": "dashlet"},
        "network": {"backend": backend,
                    "traces": ["short-video-challenge/network/medium/0", "hsdpa/norway_bus_1"]
                    + ([] if quick else ["short-video-challenge/network/low/3"])},
        "players": {"count": 2 if quick else 3, "devices": ["cpu"], "decode": "real"},
        "schedulers": [{"name": s} for s in SCHEDULERS],
    }


def prompt_config(quick: bool, backend: str, devices: str, quality: float) -> dict:
    """The --prompts case: ``config`` with the prompt catalog of PROMPT_CONFIG (its
    catalog section, the directory resolved), one device profile, and greedy-compute /
    promptpream valuing prompts at ``quality``."""
    import tomllib

    from testbed.simulator import PLAYER_DEVICE_SETTINGS

    cat = dict(tomllib.loads(PROMPT_CONFIG.read_text(encoding="utf-8"))["catalog"])
    cat["dir"] = str((PROMPT_CONFIG.parent / cat["dir"]).resolve())
    data = config(quick, Path(cat["dir"]), backend)
    data["name"] = f"simvsemu-prompts-{devices}"
    data["catalog"] = cat
    data["players"].update(PLAYER_DEVICE_SETTINGS[devices])
    data["schedulers"] = [{"name": s, "params": {"prompt_quality_mbps": quality}}
                          for s in COMPUTE_AWARE]
    return data


def first_byte_p10(rd) -> float:
    xs = []
    for label in rd.labels():
        for i in rd.players(label):
            for e in rd.events(label, i):
                if e["event"] == "download_done" and e.get("first_byte_s") is not None:
                    xs.append(float(e["first_byte_s"]) - float(e["request_s"]))
    return statistics.quantiles(xs, n=10)[0] if len(xs) >= 2 else 0.0


def means(rd) -> dict:
    out: dict = {}
    rows = rd.summary_rows()
    for label in rd.labels():
        rs = [r for r in rows if r["scheduler"] == label]
        out[label] = {m: sum(float(r[m]) for r in rs) / len(rs) for m, _ in METRICS}
    return out


def prompt_use(rd) -> dict:
    """Per scheduler: prompt chunks downloaded, share of played chunks that were prompts,
    and the mean / p90 decode time of prompt chunks (s) per device."""
    out = {}
    for label in rd.labels():
        fetched = played = prompts = 0
        dec: dict[str, list[float]] = {}
        for i in rd.players(label):
            for e in rd.events(label, i):
                kind = e["event"]
                is_prompt = str(e.get("representation", "")).startswith("prompt/")
                if kind == "download_done" and is_prompt:
                    fetched += 1
                elif kind == "chunk_played":
                    played += 1
                    prompts += is_prompt
                elif kind == "decode_done" and is_prompt:
                    dec.setdefault(e.get("device", "?"), []).append(float(e["decode_s"]))
        stats = {d: (statistics.fmean(xs), sorted(xs)[int(0.9 * (len(xs) - 1))])
                 for d, xs in sorted(dec.items())}
        out[label] = (fetched, prompts / played if played else 0.0, stats)
    return out


def decode_ratio(emu, sim) -> float | None:
    """Median prompt decode time in ``emu`` over that in ``sim`` (None: no prompt decodes)."""
    def median(rd):
        xs = [float(e["decode_s"]) for label in rd.labels() for i in rd.players(label)
              for e in rd.events(label, i) if e["event"] == "decode_done"
              and str(e.get("representation", "")).startswith("prompt/")]
        return statistics.median(xs) if xs else None

    a, b = median(emu), median(sim)
    return a / b if a and b else None


def compare(data: dict, args, out: Path, title: str) -> float:
    """Emulate ``data``, simulate it in the three variants, print the gaps; returns the
    worst sim-default gap of rebuffer_s and bytes_wasted."""
    from testbed.config import config_from_dict
    from testbed.results import open_run
    from testbed.run import run_experiment
    from testbed.simulator import simulate_experiment

    cfg = config_from_dict(data, "<sim_vs_emu>")
    labels = [e.display for e in cfg.schedulers]
    print(f"\n#### {title}")
    print(f"sim_vs_emu: emulating {len(labels)} schedulers x {cfg.players.count} players "
          f"x {cfg.session.duration_s:.0f} s ({args.backend}) into {out}", flush=True)
    emu = open_run(args.emu_run) if args.emu_run else open_run(
        run_experiment(cfg, out, progress=False, plots=False,
                       argv=["bench/sim_vs_emu.py", *sys.argv[1:]]))
    latency = first_byte_p10(emu)
    runs = {}
    queue = cfg.network.queue_packets * 1500
    variants = [("sim-default", {}),
                ("sim-latency", {"request_latency_s": latency}),
                ("sim-latency-queue", {"request_latency_s": latency, "queue_bytes": queue})]

    def simulate(tag: str, sim: dict) -> None:
        d = dict(data, name=f"{data['name']}-{tag}", simulator=sim)
        runs[tag] = open_run(simulate_experiment(config_from_dict(d, "<sim_vs_emu>"), out,
                                                 progress=False, plots=False))

    for tag, sim in variants:
        simulate(tag, sim)
    # Prompt decodes slower (or faster) in emulation than the simulator assumes: also
    # simulate with every decode time scaled by the ratio of the medians.
    scale = decode_ratio(emu, runs["sim-default"])
    if scale is not None and abs(scale - 1.0) > 0.1:
        simulate("sim-latency-decode", {"request_latency_s": latency,
                                        "decode_scale": round(scale, 3)})
        print(f"emulated prompt decodes took {scale:.2f}x the simulator's (medians): "
              f"sim-latency-decode uses simulator.decode_scale = {scale:.3f}")
    print(f"emulation backend: {emu.metadata().get('backend')}; devices {cfg.players.devices}, "
          f"device_profile {cfg.players.device_profile!r}, decode {cfg.players.decode!r}; "
          f"p10 request->first byte {latency * 1000:.1f} ms (used as "
          f"simulator.request_latency_s)")
    e_m = means(emu)
    worst = 0.0
    for tag, rd in runs.items():
        s_m = means(rd)
        print(f"\n== {tag} vs emulation (mean over players) ==")
        print(f"{'scheduler':<16}" + "".join(f"{m + ' emu':>17}{'sim':>10}{'gap%':>7}"
                                             for m, _ in METRICS))
        for label in e_m:
            cells = ""
            for m, floor in METRICS:
                ev, sv = e_m[label][m], s_m[label][m]
                gap = 100.0 * abs(sv - ev) / max(abs(ev), floor)
                if tag == HEADLINE and m in ("rebuffer_s", "bytes_wasted"):
                    worst = max(worst, gap)
                scale = 1e6 if m.startswith("bytes") else 1.0
                cells += f"{ev / scale:>17.3f}{sv / scale:>10.3f}{gap:>7.1f}"
            print(f"{label:<16}{cells}")
    print("(bytes in MB)")
    e_p, s_p = prompt_use(emu), prompt_use(runs[HEADLINE])
    if any(e_p[label][0] or s_p[label][0] for label in e_p):
        print("\nprompt chunks (emu / sim-default): downloaded, share of played, decode s "
              "mean (p90) per device")
        for label in e_p:
            def dec(stats):
                return ", ".join(f"{d} {m:.3f} ({p:.3f})" for d, (m, p) in stats.items()) \
                    or "-"
            (ef, es, ed), (sf, ss, sd) = e_p[label], s_p[label]
            print(f"{label:<16}{ef:>5} / {sf:<5} {100 * es:5.1f}% / {100 * ss:5.1f}%   "
                  f"emu: {dec(ed)}; sim: {dec(sd)}")
    print(f"worst sim-default gap here: {worst:.1f}%")
    return worst


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="2 players x 30-s sessions")
    ap.add_argument("--backend", default="userspace", choices=["auto", "mininet", "userspace"])
    ap.add_argument("--catalog", type=Path, default=REPO / "results" / "catalogs" / "simvsemu",
                    help="pixel catalog of the default case")
    ap.add_argument("--out", type=Path, default=None, help="results root (default: a temp dir)")
    ap.add_argument("--emu-run", type=Path, default=None,
                    help="reuse this emulated run (made by this script) instead of emulating "
                         "(one case only)")
    ap.add_argument("--prompts", action="store_true",
                    help="the prompt-catalog case (greedy-compute, promptpream) instead")
    ap.add_argument("--devices", default="cpu-only,npu-like",
                    help="device profiles of the --prompts case")
    ap.add_argument("--prompt-quality", type=float, default=0.45,
                    help="Mbps-eq. at which the --prompts case's schedulers value prompts")
    args = ap.parse_args(argv)
    from testbed.simulator import PLAYER_DEVICE_SETTINGS

    out = args.out or Path(tempfile.mkdtemp(prefix="simvsemu-"))
    if not args.prompts:
        cases = [(config(args.quick, args.catalog, args.backend), "pixel catalog")]
    else:
        devs = [d for d in args.devices.split(",") if d]
        bad = [d for d in devs if d not in PLAYER_DEVICE_SETTINGS]
        if bad or not devs:
            print(f"sim_vs_emu: --devices: expected some of {sorted(PLAYER_DEVICE_SETTINGS)}, got "
                  f"{args.devices!r}", file=sys.stderr)
            return 2
        cases = [(prompt_config(args.quick, args.backend, d, args.prompt_quality),
                  f"prompt catalog, {d}, prompt_quality_mbps {args.prompt_quality:g}")
                 for d in devs]
    if args.emu_run and len(cases) > 1:
        print("sim_vs_emu: --emu-run: reuse needs a single case (one --devices entry)",
              file=sys.stderr)
        return 2
    worst = max(compare(data, args, out, title) for data, title in cases)
    print(f"worst_gap {worst:.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
