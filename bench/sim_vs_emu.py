"""Cross-validation: the same config in emulation (``testbed run``) and in simulation
(``testbed simulate``); per scheduler the mean stall, rebuffer and waste from both and the
relative gaps.

Three simulator variants: ``sim-default`` (what ``testbed simulate`` does with this config:
request latency 2 x network.delay_ms = 0, no queue: pure fair sharing), ``sim-latency``
(request latency calibrated from the emulated run itself: the 10th percentile of its
request-to-first-byte times; not the median, which also holds the wait behind other
downloads' queued bytes) and ``sim-latency-queue`` (plus ``queue_bytes`` = the emulated
queue, network.queue_packets x 1500 B). The last line reports ``sim-default``. Gaps are
``|sim - emu| / max(|emu|, floor)`` with a floor (0.5 s for times, 100 KB for bytes) so
near-zero values do not turn into huge percentages; the raw values are printed beside.
Last line: ``worst_gap <x>%`` over schedulers and the two headline metrics (rebuffer_s,
bytes_wasted).

    .venv/bin/python bench/sim_vs_emu.py [--quick] [--backend userspace|mininet|auto]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SCHEDULERS = ("no-preload", "fixed", "dashlet", "greedy-compute", "promptpream")
HEADLINE = "sim-default"  # the variant the last line reports: testbed simulate's defaults
METRICS = (("rebuffer_s", 0.5), ("stall_s", 0.5), ("bytes_wasted", 100_000))


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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="2 players x 30-s sessions")
    ap.add_argument("--backend", default="userspace", choices=["auto", "mininet", "userspace"])
    ap.add_argument("--catalog", type=Path, default=REPO / "results" / "catalogs" / "simvsemu")
    ap.add_argument("--out", type=Path, default=None, help="results root (default: a temp dir)")
    ap.add_argument("--emu-run", type=Path, default=None,
                    help="reuse this emulated run (made by this script) instead of emulating")
    args = ap.parse_args(argv)

    from testbed.config import config_from_dict
    from testbed.results import open_run
    from testbed.run import run_experiment
    from testbed.simulator import simulate_experiment

    out = args.out or Path(tempfile.mkdtemp(prefix="simvsemu-"))
    data = config(args.quick, args.catalog, args.backend)
    cfg = config_from_dict(data, "<sim_vs_emu>")
    print(f"sim_vs_emu: emulating {len(SCHEDULERS)} schedulers x {cfg.players.count} players "
          f"x {cfg.session.duration_s:.0f} s ({args.backend}) into {out}", flush=True)
    emu = open_run(args.emu_run) if args.emu_run else open_run(
        run_experiment(cfg, out, progress=False, plots=False,
                       argv=["bench/sim_vs_emu.py", *sys.argv[1:]]))
    latency = first_byte_p10(emu)
    runs = {}
    queue = cfg.network.queue_packets * 1500
    for tag, sim in (("sim-default", {}),
                     ("sim-latency", {"request_latency_s": latency}),
                     ("sim-latency-queue", {"request_latency_s": latency, "queue_bytes": queue})):
        d = dict(data, name=tag, simulator=sim)
        c = config_from_dict(d, "<sim_vs_emu>")
        runs[tag] = open_run(simulate_experiment(c, out, progress=False, plots=False))
    print(f"emulation backend: {emu.metadata().get('backend')}; p10 request->first byte "
          f"{latency * 1000:.1f} ms (used as simulator.request_latency_s)")
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
    print(f"worst_gap {worst:.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
