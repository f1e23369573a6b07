"""``testbed traces``: inspect, convert, fit and fetch bandwidth traces."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from testbed.cli import UserError

FORMAT_HELP = ("trace format (default: detect): mahimahi, cooked (fcc/hsdpa/oboe/puffer), "
               "challenge, iperf3, gnettrack, lumos")


def register(sub) -> None:
    p = sub.add_parser("traces", help="inspect, convert, fit and fetch bandwidth traces",
                       description="Bandwidth-trace tools. See docs/traces.md.")
    tsub = p.add_subparsers(dest="traces_command", metavar="ACTION")
    tsub.required = True

    s = tsub.add_parser("show", help="statistics of trace files, optionally a PNG plot",
                        description="Per file: duration, time-weighted mean, and median/p5/p95 "
                        "of 1-s averages (Mbps), outage time (s with capacity < "
                        "--outage-mbps). --plot draws capacity over time, one panel per file "
                        "(the first 8).")
    s.add_argument("files", nargs="+", type=Path, metavar="FILE")
    _load_args(s)
    s.add_argument("--outage-mbps", type=float, default=0.05,
                   help="capacity below this counts as outage (default 0.05)")
    s.add_argument("--plot", type=Path, default=None, help="write a PNG plot here")
    s.add_argument("--json", action="store_true", help="print one JSON object per file")
    s.set_defaults(func=cmd_show)

    c = tsub.add_parser("convert", help="convert a trace to Mahimahi or cooked format",
                        description="Load FILE (any format), apply optional operations in the "
                        "order offset, window/loop, scale, clip, resample, and write it.")
    c.add_argument("file", type=Path, metavar="FILE")
    _load_args(c)
    c.add_argument("--to", required=True, choices=["mahimahi", "cooked"], help="output format")
    c.add_argument("--out", required=True, type=Path, help="output file")
    c.add_argument("--out-convention", choices=["start", "end"], default="end",
                   help="timing convention of cooked output (default end)")
    c.add_argument("--offset-s", type=float, default=None, help="start this far into the trace")
    c.add_argument("--duration-s", type=float, default=None,
                   help="cut (or loop) to this duration")
    c.add_argument("--scale", type=float, default=None, help="multiply rates by this")
    c.add_argument("--min-mbps", type=float, default=None, help="clip rates from below")
    c.add_argument("--max-mbps", type=float, default=None, help="clip rates from above")
    c.add_argument("--bin-s", dest="resample_s", type=float, default=None,
                   help="resample into bins of this many seconds")
    c.set_defaults(func=cmd_convert)

    f = tsub.add_parser("fit", help="fit the synthetic generator to the real datasets",
                        description="Fit the Markov-modulated generator's profiles (and the "
                        "synthetic swipe calibration) from the trace directory and write them "
                        "as JSON (the committed copy is traces/data/synthetic_params.json).")
    f.add_argument("--out", type=Path, required=True, help="output JSON file")
    f.add_argument("--trace-dir", type=Path, default=None,
                   help="real traces (default: PROMPTBED_TRACES or ../shared/traces)")
    f.set_defaults(func=cmd_fit)

    g = tsub.add_parser("generate", help="write a synthetic trace",
                        description="Generate a synthetic trace from a fitted profile.")
    g.add_argument("--profile", default=None, help="profile name (default challenge-medium)")
    g.add_argument("--duration-s", type=float, default=600.0, help="length (default 600)")
    g.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    g.add_argument("--to", choices=["mahimahi", "cooked"], default="cooked",
                   help="output format (default cooked)")
    g.add_argument("--out", type=Path, required=True, help="output file")
    g.set_defaults(func=cmd_generate)

    d = tsub.add_parser("fetch", help="download a public dataset",
                        description="Download dataset NAME from its canonical GitHub location "
                        "(or --mirror, which serves the shared/traces layout) into DEST, "
                        "checking each file's size and git blob hash. Files already there and "
                        "correct are kept. Names: see `testbed traces datasets`.")
    d.add_argument("name", metavar="NAME")
    d.add_argument("--dest", type=Path, required=True, help="destination folder")
    d.add_argument("--mirror", default=None, help="base URL of a mirror")
    d.add_argument("--parallel", type=int, default=8, help="parallel downloads (default 8)")
    d.add_argument("--timeout-s", type=float, default=300.0,
                   help="time limit per HTTP session (default 300)")
    d.set_defaults(func=cmd_fetch)

    ls = tsub.add_parser("datasets", help="list the datasets fetch knows",
                         description="List fetchable datasets with source and size.")
    ls.set_defaults(func=cmd_datasets)

    r = tsub.add_parser("registry", help="rebuild the dataset registry from a verified copy",
                        description="Maintainers: write traces/data/datasets.json (names, "
                        "sizes, git blob hashes) from a trace directory.")
    r.add_argument("--trace-dir", type=Path, default=None)
    r.add_argument("--out", type=Path, required=True)
    r.set_defaults(func=cmd_registry)


def _load_args(p) -> None:
    p.add_argument("--format", dest="fmt", default=None, help=FORMAT_HELP)
    p.add_argument("--convention", choices=["start", "end"], default=None,
                   help="timing of 'time rate' lines: 'end' = a value covers the interval "
                   "ending at its time (default for cooked/challenge), 'start' = from its time "
                   "on (default for iperf3)")
    p.add_argument("--mahimahi-bin-s", type=float, default=0.1,
                   help="bin width for Mahimahi files (default 0.1)")


def _load(path: Path, args):
    from traces.formats import load
    from traces.trace import TraceError

    try:
        return load(path, args.fmt, convention=args.convention, bin_s=args.mahimahi_bin_s)
    except TraceError as exc:
        raise UserError(str(exc)) from None


def trace_stats(trace, outage_mbps: float = 0.05) -> dict:
    """Statistics shown by ``traces show``: time-weighted mean; median/p5/p95 of 1-s
    averages; outage seconds (time with capacity < outage_mbps)."""
    import numpy as np

    from traces.ops import resample
    from traces.paths import trace_hash

    per_s = trace.rates_mbps
    if trace.duration_s >= 2:
        r = resample(trace, 1.0)
        # A short last bin (the tail of a non-whole-second trace) is not a 1-s average.
        per_s = r.rates_mbps if r.last_step_s >= 1 - 1e-9 else r.rates_mbps[:-1]
    w = trace.ends_s - trace.times_s
    return {"name": trace.name, "source": trace.source,
            "format": trace.meta.get("format", ""),
            "duration_s": round(trace.duration_s, 3),
            "mean_mbps": round(trace.mean_mbps(), 4),
            "median_mbps": round(float(np.median(per_s)), 4),
            "p5_mbps": round(float(np.percentile(per_s, 5)), 4),
            "p95_mbps": round(float(np.percentile(per_s, 95)), 4),
            "outage_s": round(float(w[trace.rates_mbps < outage_mbps].sum()), 3),
            "samples": len(trace.times_s), "hash": trace_hash(trace)}


def cmd_show(args) -> int:
    loaded = [_load(p, args) for p in args.files]
    rows = [trace_stats(t, args.outage_mbps) for t in loaded]
    if args.json:
        for r in rows:
            print(json.dumps(r))
    else:
        print(f"{'trace':40s} {'format':9s} {'dur_s':>8s} {'mean':>7s} {'median':>7s} "
              f"{'p5':>7s} {'p95':>7s} {'outage_s':>8s}")
        for r in rows:
            print(f"{r['name'][:40]:40s} {r['format']:9s} {r['duration_s']:8.1f} "
                  f"{r['mean_mbps']:7.3f} {r['median_mbps']:7.3f} {r['p5_mbps']:7.3f} "
                  f"{r['p95_mbps']:7.3f} {r['outage_s']:8.1f}")
        print("(Mbps; median/p5/p95 of 1-s averages)")
    if args.plot:
        plot_traces(loaded, args.plot)
        print(f"plot: {args.plot}", file=sys.stderr)
    return 0


def plot_traces(traces, out: Path) -> None:
    """Capacity over time of each trace as a step plot, one panel each (max 8)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    shown = traces[:8]
    fig, axes = plt.subplots(len(shown), 1, figsize=(10, 2.2 * len(shown) + 0.5),
                             squeeze=False, sharex=False)
    for ax, t in zip(axes[:, 0], shown):
        x = np.append(t.times_s - t.start_s, t.duration_s)
        y = np.append(t.rates_mbps, t.rates_mbps[-1])
        ax.step(x, y, where="post", lw=0.8)
        ax.axhline(t.mean_mbps(), color="k", ls="--", lw=0.7,
                   label=f"mean {t.mean_mbps():.2f} Mbps")
        ax.set_title(t.name, fontsize=9)
        ax.set_ylabel("Mbps")
        ax.set_xlim(0, t.duration_s)
        ax.set_ylim(bottom=0)
        ax.legend(loc="upper right", fontsize=8)
    axes[-1, 0].set_xlabel("time (s)")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def cmd_convert(args) -> int:
    from traces import ops
    from traces.trace import TraceError

    t = _load(args.file, args)
    try:
        if args.offset_s is not None:
            t = ops.offset(t, args.offset_s)
        if args.duration_s is not None:
            t = ops.loop(t, args.duration_s)
        if args.scale is not None:
            t = ops.scale(t, args.scale)
        if args.min_mbps is not None or args.max_mbps is not None:
            t = ops.clip(t, args.min_mbps, args.max_mbps)
        if args.resample_s is not None:
            t = ops.resample(t, args.resample_s)
        if args.to == "mahimahi":
            ops.write_mahimahi(t, args.out)
        else:
            ops.write_cooked(t, args.out, args.out_convention)
    except (TraceError, OSError) as exc:
        raise UserError(str(exc)) from None
    print(f"{args.out}: {args.to}, {t.duration_s:.1f} s, mean {t.mean_mbps():.3f} Mbps")
    return 0


def cmd_generate(args) -> int:
    from traces import ops, synthetic
    from traces.trace import TraceError

    try:
        t = synthetic.generate(args.profile or synthetic.DEFAULT_PROFILE, args.duration_s,
                               args.seed)
        (ops.write_mahimahi if args.to == "mahimahi" else ops.write_cooked)(t, args.out)
    except (TraceError, OSError) as exc:
        raise UserError(str(exc)) from None
    print(f"{args.out}: {t.name}, {t.duration_s:.1f} s, mean {t.mean_mbps():.3f} Mbps")
    return 0


def cmd_fit(args) -> int:
    from traces import synthetic
    from traces.formats import load
    from traces.paths import list_traces, trace_dir
    from traces.swipe import fit_swipe_calibration, load_swipe_dir
    from traces.trace import TraceError

    try:
        root = args.trace_dir or trace_dir()
    except TraceError as exc:
        raise UserError(str(exc)) from None
    if root is None or not Path(root).is_dir():
        raise UserError("no trace directory: pass --trace-dir or set PROMPTBED_TRACES")
    root = Path(root).resolve()
    out = {"generator": "traces.synthetic (Markov-modulated, see docs/traces.md)",
           "trace_dir": "shared/traces (see its PROVENANCE.md)", "profiles": {}}
    try:
        for name, (datasets, step_s, bands) in synthetic.PROFILE_SOURCES.items():
            files = [f for d in datasets for f in list_traces(d, root)]
            traces = [load(f) for f in files]
            prof = synthetic.fit_profile(traces, step_s, bands)
            prof["source"] = {"datasets": datasets, "files": len(files)}
            out["profiles"][name] = prof
            print(f"{name}: {len(files)} files, {prof['n_steps']} steps of {step_s:g} s, "
                  f"mean {prof['fitted_on']['mean_mbps']:.3f} Mbps", file=sys.stderr)
        turk = root / "dashlet-swipe" / "turk"
        swipe = fit_swipe_calibration(load_swipe_dir(turk))
        swipe["source"] = "dashlet-swipe/turk (Dashlet NSDI'24 MTurk study, 215-file subset)"
        out["swipe"] = swipe
    except TraceError as exc:
        raise UserError(str(exc)) from None
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".tmp")
    tmp.write_text(json.dumps(out, indent=1) + "\n")
    tmp.replace(args.out)
    print(f"wrote {args.out}")
    return 0


def cmd_fetch(args) -> int:
    from traces.fetch import fetch
    from traces.trace import TraceError

    if args.parallel < 1:
        raise UserError(f"--parallel: expected >= 1, got {args.parallel}")
    try:
        res = fetch(args.name, args.dest, mirror=args.mirror, parallel=args.parallel,
                    timeout_s=args.timeout_s)
    except TraceError as exc:
        raise UserError(str(exc)) from None
    print(f"{args.name}: {res['files']} files in {args.dest} ({res['fetched']} fetched, "
          f"{res['bytes']} bytes; {res['kept']} already present)")
    return 0


def cmd_datasets(args) -> int:
    from traces.fetch import load_registry
    from traces.trace import TraceError

    try:
        table = load_registry()
    except TraceError as exc:
        raise UserError(str(exc)) from None
    for name, ds in sorted(table.items()):
        size = sum(f["size"] for f in ds["files"])
        print(f"{name:24s} {len(ds['files']):4d} files {size / 1e6:8.2f} MB  "
              f"{ds['repo']}@{ds['commit'][:10]}")
    return 0


def cmd_registry(args) -> int:
    from traces.fetch import build_registry
    from traces.paths import trace_dir
    from traces.trace import TraceError

    try:
        root = args.trace_dir or trace_dir()
        if root is None:
            raise UserError("no trace directory: pass --trace-dir")
        reg = build_registry(Path(root))
    except TraceError as exc:
        raise UserError(str(exc)) from None
    args.out.write_text(json.dumps(reg, indent=0) + "\n")
    print(f"wrote {args.out}: {sum(len(d['files']) for d in reg['datasets'].values())} files")
    return 0
