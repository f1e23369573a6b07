"""Link fidelity: does a shaped link deliver what its trace says? Per backend available here.

For real traces from several datasets (``--quick``: 3 traces, 30 s), every trace gets its own
player host and access link (``access`` topology, all links at once), a saturating TCP flow
runs origin -> player, and per second we compare (a) the bytes leaving the shaper ("wire",
against the rate the shaper was asked for: trace x rate factor) and (b) the TCP goodput
(against the trace). The first seconds (TCP start-up) are left out.

    python bench/link_fidelity.py [--quick] [--backend mininet|userspace|all] [--cc NAME]
                                  [--queue-packets N] [--out F.json]

Last line: ``MAPE <backend> wire <x>% goodput <y>%`` for the worst backend (traces with mean
>= 0.5 Mbit/s).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from testbed.emulation import open_backend  # noqa: E402
from testbed.emulation.measure import measure_links  # noqa: E402
from testbed.emulation.mininet_backend import mininet_available  # noqa: E402
from traces import load, trace_dir  # noqa: E402
from traces.ops import window, with_name  # noqa: E402

# (path under the trace directory, start offset s): 14 traces, 6 datasets.
FULL = [
    ("short-video-challenge/network/medium/0", 0), ("short-video-challenge/network/high/0", 0),
    ("short-video-challenge/network/low/3", 0), ("hsdpa/norway_bus_1", 0),
    ("hsdpa/norway_train_1", 0), ("hsdpa/norway_tram_10", 0), ("hsdpa/norway_ferry_2", 0),
    ("fcc/trace_925800_http---www.ebay.com", 0), ("oboe/oboe_trace_0.txt", 0),
    ("oboe/oboe_trace_14.txt", 0), ("mahimahi/TMobile-UMTS-driving.down", 60),
    ("mahimahi/Verizon-EVDO-driving.down", 60), ("mahimahi/ATT-LTE-driving.down", 60),
    ("solis-wifi/wifi_cafe_231115-154511.txt", 0),
]
QUICK = [("short-video-challenge/network/medium/0", 0), ("hsdpa/norway_bus_1", 0),
         ("mahimahi/TMobile-UMTS-driving.down", 60)]


def pick(root: Path, items) -> list:
    """The listed traces under ``root``; a missing one is an error (never a stand-in: the
    table would name a trace it did not measure)."""
    missing = [rel for rel, _ in items if not (root / rel).is_file()]
    if missing:
        raise SystemExit(f"link_fidelity: trace file(s) not found under {root}: "
                         f"{', '.join(missing)} (expected the public datasets described in "
                         f"PROVENANCE.md; set PROMPTBED_TRACES to their directory)")
    return [(root / rel, off) for rel, off in items]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="3 traces, 30 s")
    ap.add_argument("--backend", default="all", choices=["all", "mininet", "userspace"])
    ap.add_argument("--duration-s", type=float, default=None)
    ap.add_argument("--cc", default=None, help="sender TCP congestion control "
                    "(default: the system's; printed)")
    ap.add_argument("--queue-packets", type=int, default=None,
                    help="link_options.queue_packets (default: the backends' default, 100)")
    ap.add_argument("--out", type=Path, default=None, help="write all results as JSON")
    args = ap.parse_args(argv)
    root = trace_dir()
    if root is None:
        print("no trace directory (set PROMPTBED_TRACES)", file=sys.stderr)
        return 2
    duration = args.duration_s or (30.0 if args.quick else 60.0)
    chosen = pick(root, QUICK if args.quick else FULL)
    traces = []
    for p, off in chosen:
        tr = load(p)
        tr = with_name(window(tr, tr.start_s + off, duration + 5), str(p.relative_to(root)))
        traces.append(tr)
    backends = ["mininet", "userspace"] if args.backend == "all" else [args.backend]
    if "mininet" in backends and mininet_available() is not None:
        print(f"mininet: skipped ({mininet_available()})", file=sys.stderr)
        backends.remove("mininet")
    results = {}
    for be in backends:
        with tempfile.TemporaryDirectory() as wd:
            opts = {} if args.queue_packets is None else {"queue_packets": args.queue_packets}
            with open_backend(be, "access", traces, opts, "lf", wd) as net:
                results[be] = measure_links(net, traces, duration, Path(wd), cc=args.cc)
    worst = None
    datasets = sorted({p.parent.name if p.parent.parent == root else p.parts[len(root.parts)]
                       for p, _ in chosen})
    cc = sorted({r["cc"] for rows in results.values() for r in rows if r.get("cc")})
    print(f"{len(chosen)} traces from {len(datasets)} datasets ({', '.join(datasets)}), "
          f"{duration:g} s each, all links at once; sender congestion control: "
          f"{', '.join(cc) or 'unknown'}")
    print(f"{'backend':9} {'trace':48} {'mean Mbps':>9} {'wire MAPE':>9} {'gput MAPE':>9} "
          f"{'gput bias':>9}")
    for be, rows in results.items():
        ok = [r for r in rows if r["mean_trace_mbps"] >= 0.5]
        for r in rows:
            print(f"{be:9} {r['trace'][:48]:48} {r['mean_trace_mbps']:9.2f} "
                  f"{r['wire']['mape_pct']:8.1f}% {r['goodput']['mape_pct']:8.1f}% "
                  f"{r['goodput']['bias_pct']:+8.1f}%")
        wm = sum(r["wire"]["mape_pct"] for r in ok) / max(len(ok), 1)
        gm = sum(r["goodput"]["mape_pct"] for r in ok) / max(len(ok), 1)
        print(f"{be:9} {'mean over traces >= 0.5 Mbps (' + str(len(ok)) + ')':48} "
              f"{'':9} {wm:8.1f}% {gm:8.1f}%")
        if worst is None or gm > worst[2]:
            worst = (be, wm, gm)
    if args.out:
        args.out.write_text(json.dumps(results))
    if worst is None:
        print("no backend ran", file=sys.stderr)
        return 1
    print(f"MAPE {worst[0]} wire {worst[1]:.1f}% goodput {worst[2]:.1f}%")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
