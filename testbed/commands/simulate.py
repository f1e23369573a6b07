"""``testbed simulate``: the run of a config in discrete-event simulation (testbed.simulator)."""

from __future__ import annotations

import sys
from pathlib import Path

from testbed.cli import UserError


def register(sub) -> None:
    p = sub.add_parser(
        "simulate",
        help="run a comparison in discrete-event simulation, results to results/<run-id>/",
        description="Read CONFIG (the same file `testbed run` takes), prepare the catalog if "
        "it is missing, and run every scheduler x player in simulation: the same session "
        "model, schedulers, feeds, swipes and traces as `testbed run`, with a trace-driven "
        "link shared by concurrent downloads (processor sharing, exact), decode devices "
        "timed by the device profile, and [simulator] request_latency_s before each "
        "first byte (default: 2 x network.delay_ms). Writes <out>/<run-id>/ in the layout "
        "of `testbed run` with backend \"simulator\", so `testbed compare` reads both. "
        "Same config and seed -> identical event logs.",
    )
    p.add_argument("config", type=Path, metavar="CONFIG", help="run configuration (.toml/.json)")
    p.add_argument("--out", type=Path, default=None,
                   help="results root (default: results/ in the checkout)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="K=V",
                   help="override a config field, e.g. --set session.duration_s=600 "
                   "(repeatable; TOML values)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.set_defaults(func=run)


def run(args) -> int:
    from players.feed import FeedError
    from testbed.config import ConfigError, load_config
    from testbed.report import compare_rows, format_table
    from testbed.results import ResultsError, open_run
    from testbed.simulator import SimulationError, simulate_experiment
    from traces.trace import TraceError

    try:
        cfg = load_config(args.config, args.overrides)
    except ConfigError as exc:
        raise UserError(str(exc)) from None
    try:
        path = simulate_experiment(cfg, args.out, progress=not args.quiet,
                                   argv=["testbed", *sys.argv[1:]], plots=not args.no_plots)
    except (ResultsError, SimulationError, FeedError, TraceError) as exc:
        raise UserError(str(exc)) from None
    print(format_table(compare_rows([open_run(path)])))
    print(f"results: {path}")
    return 0
