"""``testbed run``: one experiment from a config file into ``results/<run-id>/``."""

from __future__ import annotations

import sys
from pathlib import Path

from testbed.cli import UserError


def register(sub) -> None:
    p = sub.add_parser(
        "run",
        help="run a comparison: real players over emulated links, results to results/<run-id>/",
        description="Resolve and validate CONFIG (TOML or JSON; see configs/ and "
        "docs/running.md), prepare the catalog if it is missing, build the topology "
        "(Mininet as root, else the user-space link emulator), start the origin and one "
        "player process per player, replay the traces, show progress, and write "
        "<out>/<run-id>/: metadata.json, events/, resources/, links/, summary.csv, plots/. "
        "Every scheduler sees the same traces, trace offset, swipe seed and catalog "
        "(mode=serial: one after another on a fresh topology; mode=parallel: side by side "
        "on separate links). Prints the summary table and where the plots are. An "
        "interrupted run keeps what it wrote and is marked complete=false.",
    )
    p.add_argument("config", type=Path, metavar="CONFIG", help="run configuration (.toml/.json)")
    p.add_argument("--out", type=Path, default=None,
                   help="results root (default: results/ in the checkout)")
    p.add_argument("--backend", choices=["auto", "mininet", "userspace"], default=None,
                   help="override network.backend (auto: Mininet when root and available)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="K=V",
                   help="override a config field, e.g. --set session.duration_s=20 "
                   "(repeatable; TOML values)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.set_defaults(func=run)


def run(args) -> int:
    from testbed.config import ConfigError, load_config
    from testbed.emulation import BackendError
    from testbed.report import compare_rows, format_table
    from testbed.results import ResultsError, open_run
    from testbed.run import RunError, run_experiment

    try:
        cfg = load_config(args.config, args.overrides)
    except ConfigError as exc:
        raise UserError(str(exc)) from None
    try:
        path = run_experiment(cfg, args.out, backend=args.backend, progress=not args.quiet,
                              argv=["testbed", *sys.argv[1:]], plots=not args.no_plots)
    except (RunError, ResultsError, BackendError) as exc:
        raise UserError(str(exc)) from None
    rd = open_run(path)
    print(format_table(compare_rows([rd])))
    print(f"results: {path}")
    plots = sorted((path / "plots").glob("*.png"))
    if plots:
        print(f"plots:   {path / 'plots'} ({', '.join(p.name for p in plots)})")
    return 0
