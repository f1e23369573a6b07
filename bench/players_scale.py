"""How many concurrent player processes one machine holds before the emulator itself stalls.

N real player processes (``players.player``, pixel decode on, real PyAV) against one origin
process, through the emulator: each round builds a fresh ``access`` topology with the
chosen backend (``--backend``: Mininet as root, else the user-space relays; ``none``: plain
loopback, to tell the emulator's share apart) whose N player links replay a constant
``--link-mbps`` (default 50, far above what a player fetches: the link is never the
bottleneck), and all players start their session at the same wall-clock instant. N
doubles (1, 2, 4, 8, ...) until a round has a stall (any player's stall_s above
``--stall-tolerance-s``) or a player fails, then bisects between the last good and the
first bad N; the answer is the largest N that had none. Each round prints N, total and
worst stall, mean/p95 startup, CPU seconds and peak RSS per player, the sampler's
overhead, and how late the last player started its session after the common start
(setup on a loaded machine).

The scheduler is ``--scheduler`` (default ``fixed`` when the baselines exist, else a simple
sequential fetcher defined here: every chunk of the window in order, lowest bitrate), the
feed is every video watched to the end. Bounded: ``--time-limit-s`` overall (a round that
would not fit is not started). Last line: ``players <n>``.

    .venv/bin/python bench/players_scale.py [--backend auto|mininet|userspace|none]
        [--link-mbps 50] [--catalog DIR] [--session-s 15] [--max-players 64]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# The sequential fetcher, registered in each player process before ``main`` runs.
_LAUNCH = """
import sys
from players.schedulers.base import Download, Scheduler, Wait, register

@register
class BenchSequential(Scheduler):
    name = "bench-sequential"

    def decide(self, obs):
        for v in obs.videos:
            first = int(obs.playhead_s // v.chunk_s) if v.position == obs.current else 0
            for c in range(first, v.n_chunks):
                if c not in v.downloaded and not obs.is_in_flight(v.position, c):
                    return Download(v.position, c, v.representations[0].name)
        return Wait(0.5)

from players.player import main
sys.exit(main(sys.argv[1:]))
"""


def _prepare(tmp: Path) -> Path:
    from origin.prepare import PrepareConfig, prepare_catalog

    out = tmp / "catalog"
    prepare_catalog(PrepareConfig(out=out, count=4, duration_s=6.0, codecs=("h264",),
                                  ladder_kbps=(500,), decode_samples=2), progress=False)
    return out


class _Loopback:
    """``--backend none``: the emulator's interface (the part this bench uses) on plain
    loopback, with no shaping and no relay."""

    kind = "none"
    origin_host = "origin"

    def __init__(self, n: int) -> None:
        self.player_hosts = [f"p{i}" for i in range(n)]
        self._port = None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        return None

    def origin_bind(self, host):
        import socket

        with socket.socket() as s:  # a free port; the origin binds it a moment later
            s.bind(("127.0.0.1", 0))
            self._port = s.getsockname()[1]
        return "127.0.0.1", self._port

    def origin_url(self, host) -> str:
        return f"http://127.0.0.1:{self._port}"

    def popen(self, host, argv, **kw):
        return subprocess.Popen(argv, **kw)

    def start_replay(self) -> None:
        return None


def _network(n: int, work: Path, args):
    if args.backend == "none":
        return _Loopback(n)
    import numpy as np

    from testbed.emulation import open_backend
    from traces.trace import Trace

    link = Trace(np.array([0.0]), np.array([args.link_mbps]), 3600.0,
                 name=f"constant {args.link_mbps:g} Mbps")
    netdir = work / "net"
    netdir.mkdir()
    return open_backend(args.backend, "access", [link] * n, {}, f"ps{n}", netdir)


def _round(n: int, catalog: Path, work: Path, args) -> dict:
    from testbed.run import start_origin, stop_origin

    with _network(n, work, args) as net:
        origin = start_origin(net, catalog, work / "access.jsonl", work / "origin.err")
        try:
            net.start_replay()
            return _players(n, net, catalog, work, args)
        finally:
            stop_origin(origin)


def _players(n: int, net, catalog: Path, work: Path, args) -> dict:
    from origin import manifest as mf
    from players.accounting import read_events, summarize

    cat = mf.load_catalog(catalog)
    ids = cat.video_ids
    length = int(args.session_s // cat.videos[0].duration_s) + 2
    procs = []
    start_at = time.time() + args.setup_s + args.setup_per_player_s * n
    for i in range(n):
        videos = [ids[(i + k) % len(ids)] for k in range(length)]
        host = net.player_hosts[i]
        cfg = {
            "origin_url": net.origin_url(host),
            "feed": {"videos": videos,
                     "watch_s": [cat.videos[ids.index(v)].duration_s for v in videos],
                     "watch_pmf": [[0.0] * int(cat.videos[ids.index(v)].duration_s) + [1.0]
                                   for v in videos]},
            "scheduler": {"name": args.scheduler, "params": {}, "seed": i},
            "session": {"duration_s": args.session_s, "window": 3, "max_parallel": 2},
            "devices": ["cpu"], "decode": "real", "sample_interval_s": 1.0,
            "events_path": str(work / f"n{n}-p{i}.jsonl"),
            "resources_path": str(work / f"n{n}-p{i}.res.jsonl"),
            "summary_path": str(work / f"n{n}-p{i}.json"),
            "start_at_unix_s": start_at,
        }
        path = work / f"n{n}-p{i}.cfg.json"
        path.write_text(json.dumps(cfg))
        argv = ([sys.executable, "-m", "players", str(path)] if args.scheduler != "bench-sequential"
                else [sys.executable, "-c", _LAUNCH, str(path)])
        with open(work / f"n{n}-p{i}.err", "wb") as err:  # the child keeps its own copy
            procs.append(net.popen(host, argv, stdout=subprocess.DEVNULL, stderr=err,
                                   cwd=REPO))
    failed = []
    for i, p in enumerate(procs):
        try:
            p.wait(timeout=args.session_s + args.setup_s + args.setup_per_player_s * n + 60)
        except subprocess.TimeoutExpired:
            from testbed.run import stop_process

            stop_process(p)
        if p.returncode != 0:
            err = (work / f"n{n}-p{i}.err").read_text(errors="replace").strip()
            failed.append(f"p{i}: status {p.returncode}: {err[-200:]}")
    stalls, startups, cpu, rss, sampler, late = [], [], [], [], [], []
    for i in range(n):
        sp = work / f"n{n}-p{i}.json"
        if not sp.exists():
            continue
        s = json.loads(sp.read_text())
        ev = read_events(work / f"n{n}-p{i}.jsonl")
        s2 = summarize(ev)
        stalls.append(s2["stall_s"])
        startups.append(s2["startup_s_mean"])
        cpu.append(s["resources"]["cpu_s"])
        rss.append(s["resources"]["peak_rss_mb"])
        sampler.append(s["resources"]["sampler_cpu_s"])
        late.append(max(0.0, ev[0]["wall_s"] - start_at))
    return {"n": n, "failed": failed, "stall_s_total": sum(stalls),
            "stall_s_max": max(stalls, default=float("nan")),
            "startup_s_mean": statistics.fmean(startups) if startups else float("nan"),
            "startup_s_max": max(startups, default=float("nan")),
            "cpu_s_per_player": statistics.fmean(cpu) if cpu else float("nan"),
            "peak_rss_mb": max(rss, default=float("nan")),
            "sampler_cpu_share": (sum(sampler) / sum(cpu)) if cpu and sum(cpu) else float("nan"),
            "late_s_max": max(late, default=float("nan"))}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backend", default="auto",
                    choices=("auto", "mininet", "userspace", "none"),
                    help="emulation backend for each round's topology (none: plain loopback)")
    ap.add_argument("--link-mbps", type=float, default=50.0,
                    help="constant capacity of every player link (Mbit/s)")
    ap.add_argument("--catalog", type=Path, default=None, help="prepared catalog (default: "
                    "4 videos x 6 s, 256x256, H.264 500 kbps, made in a temp dir)")
    ap.add_argument("--session-s", type=float, default=15.0, help="session per player (s)")
    ap.add_argument("--setup-s", type=float, default=4.0,
                    help="time given to start the processes before the common start (s)")
    ap.add_argument("--setup-per-player-s", type=float, default=0.4,
                    help="extra setup time per player (Python start + imports on 2 cores)")
    ap.add_argument("--max-players", type=int, default=64)
    ap.add_argument("--stall-tolerance-s", type=float, default=0.0,
                    help="per-player stall seconds still counted as no stall")
    ap.add_argument("--time-limit-s", type=float, default=280.0)
    ap.add_argument("--scheduler", default=None,
                    help="scheduler name (default: fixed if registered, else bench-sequential)")
    args = ap.parse_args(argv)
    if args.scheduler is None:
        from players.schedulers.base import available

        args.scheduler = "fixed" if "fixed" in available() else "bench-sequential"
    t_begin = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="players-scale-") as tmp:
        tmp = Path(tmp)
        catalog = args.catalog or _prepare(tmp)
        if args.backend == "auto":
            from testbed.emulation import resolve_backend

            args.backend = resolve_backend("auto")
        best = 0
        print(f"scheduler {args.scheduler}, session {args.session_s:g} s, backend "
              f"{args.backend}" + (f", links {args.link_mbps:g} Mbps"
                                   if args.backend != "none" else ""))
        print(f"{'N':>4} {'stall_total_s':>13} {'stall_max_s':>11} {'startup_mean_s':>14} "
              f"{'startup_max_s':>13} {'cpu_s/player':>12} {'peak_rss_mb':>11} "
              f"{'sampler_cpu':>11} {'late_start_s':>12}")
        n, bad = 1, None
        while n <= args.max_players and (bad is None or n < bad):
            need = args.session_s + args.setup_s + args.setup_per_player_s * n + 10 + 0.3 * n
            if time.monotonic() - t_begin + need > args.time_limit_s:
                print(f"(stopping: a round of {n} would pass --time-limit-s)")
                break
            work = tmp / f"n{n}"
            work.mkdir()
            r = _round(n, catalog, work, args)
            print(f"{n:>4} {r['stall_s_total']:>13.3f} {r['stall_s_max']:>11.3f} "
                  f"{r['startup_s_mean']:>14.3f} {r['startup_s_max']:>13.3f} "
                  f"{r['cpu_s_per_player']:>12.2f} {r['peak_rss_mb']:>11.1f} "
                  f"{r['sampler_cpu_share']:>10.2%} {r['late_s_max']:>12.2f}", flush=True)
            if r["failed"]:
                print("failed: " + "; ".join(r["failed"][:3]))
            if r["failed"] or r["stall_s_max"] > args.stall_tolerance_s:
                bad = n
            else:
                best = n
            # double until the first stall, then bisect between the last good and bad N
            n = n * 2 if bad is None else (best + bad) // 2
            if bad is not None and (n <= best or bad - best <= max(1, best // 8)):
                break
    print(f"players {best}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
