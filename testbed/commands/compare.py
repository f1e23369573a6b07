"""``testbed compare``: schedulers side by side from finished run directories (files only)."""

from __future__ import annotations

from pathlib import Path

from testbed.cli import UserError


def register(sub) -> None:
    p = sub.add_parser(
        "compare",
        help="table and plots comparing the schedulers of one or more run directories",
        description="Read RUN_DIR/summary.csv (or the event logs when it is missing) of each "
        "run and print, per scheduler, the mean ± sample standard deviation over its players "
        "of stall time, stall count, startup delay, MB downloaded and wasted, waste ratio, "
        "mean quality, QoE, challenge score and CPU seconds. Writes plots to --out: "
        "stall_vs_waste.png, qoe.png (bars with spread), stall_cdf.png and timeline.png "
        "(link capacity, throughput, buffer per video, stalls, swipes of one player). "
        "Reads only files; never touches a live system.",
    )
    p.add_argument("runs", nargs="+", type=Path, metavar="RUN_DIR", help="results/<run-id>/")
    p.add_argument("--out", type=Path, default=None,
                   help="plot folder (default: RUN_DIR/plots for one run, else "
                   "results/compare-<first run id>/)")
    p.add_argument("--player", type=int, default=0, help="player shown in the timeline (default 0)")
    p.add_argument("--csv", type=Path, default=None, help="also write the table as CSV here")
    p.add_argument("--no-plots", action="store_true", help="table only")
    p.set_defaults(func=run)


def run(args) -> int:
    from testbed.report import compare_rows, format_table, plot_compare, write_table_csv
    from testbed.results import ResultsError, open_run
    from testbed.run import DEFAULT_RESULTS

    try:
        runs = [open_run(p) for p in args.runs]
        rows = compare_rows(runs)
    except (ResultsError, ValueError) as exc:
        raise UserError(str(exc)) from None
    if not rows:
        raise UserError(f"{', '.join(map(str, args.runs))}: no player results to compare")
    for rd in runs:
        meta = rd.metadata()
        if not meta.get("complete", False):
            print(f"note: {rd.path} is incomplete ({meta.get('incomplete_reason', 'no reason')})")
    print(format_table(rows, with_run=len(runs) > 1))
    if args.csv:
        write_table_csv(rows, args.csv)
        print(f"table:  {args.csv}")
    if not args.no_plots:
        out = args.out or (runs[0].plots_dir if len(runs) == 1
                           else DEFAULT_RESULTS / f"compare-{runs[0].run_id}")
        paths = plot_compare(runs, out, player=args.player)
        print(f"plots:  {out} ({', '.join(p.name for p in paths)})")
    return 0
