"""One experiment run: config in, ``results/<run-id>/`` out (the programmatic ``testbed run``).

``run_experiment(cfg, out_dir, backend=None, progress=True)`` does, in order:
1. prepare the catalog when ``catalog.dir`` has none (origin.prepare);
2. compute each player's feed and watch times once (players.feed), so every scheduler sees
   the same videos and the same swipes;
3. open each link's trace once (same trace, offset and seed for every scheduler);
4. per scheduler (``mode = "serial"``: a fresh topology each) or for all at once
   (``mode = "parallel"``: one topology, a link per (scheduler, player), player *i* of every
   scheduler replaying the same trace): build the topology (testbed.emulation.open_backend),
   start the origin on its host and wait for its "listening" line (deadline), start trace
   replay, start one player process per player, show progress, wait for them (deadline),
   record interface byte counters;
5. write summary.csv and the plots, and mark metadata.json complete.

An exception, SIGINT or SIGTERM tears the topology down (the backend owns what it made),
keeps every file written so far, writes a summary of what is there and leaves
``complete: false`` with the reason in metadata.json.
"""

from __future__ import annotations

import dataclasses
import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from testbed import provenance
from testbed.config import RunConfig, resolve_path, to_dict
from testbed.results import RunDir, new_run_id

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_RESULTS = REPO_ROOT / "results"
ORIGIN_LISTEN_DEADLINE_S = 30.0
# Time a player may take beyond its session: catalog fetch, process start, last decodes.
PLAYER_GRACE_S = 30.0
TERM_WAIT_S = 5.0


class RunError(RuntimeError):
    """The run could not go on (origin did not start, a player failed); names the part."""


class RunInterrupted(Exception):
    """SIGTERM (or SIGINT) during a run."""


# -------------------------------------------------------------------------- preparation


def catalog_dir(cfg: RunConfig) -> Path:
    return resolve_path(cfg, cfg.catalog.dir).resolve()


def ensure_catalog(cfg: RunConfig, progress: bool = True) -> Path:
    """The catalog folder, prepared with the config's catalog fields when it has none."""
    from origin import prepare

    out = catalog_dir(cfg)
    if (out / "catalog.json").is_file():
        return out
    c = cfg.catalog
    pc = prepare.PrepareConfig(out=out, count=c.count, min_duration_s=c.min_duration_s,
                               max_duration_s=c.max_duration_s, seed=c.seed, chunk_s=c.chunk_s,
                               codecs=tuple(c.codecs), ladder_kbps=tuple(c.ladder_kbps))
    if progress:
        print(f"run: preparing catalog in {out}", file=sys.stderr, flush=True)
    prepare.prepare_catalog(pc, progress=progress)
    if c.prompt_ranks:
        from codec import catalog as codec_catalog  # prompt step: the codec engineer's API

        codec_catalog.add_prompt_representations(out, ranks=tuple(c.prompt_ranks))
    return out


@dataclass(frozen=True)
class LinkTrace:
    """The trace one link replays: the config's spec, the loaded (windowed) trace, its hash."""

    spec: str
    trace: Any
    hash: str
    fallback: str = ""

    def describe(self) -> dict:
        return {"spec": self.spec, "name": self.trace.name, "source": self.trace.source,
                "hash": self.hash, "duration_s": float(self.trace.duration_s),
                "mean_mbps": float(self.trace.mean_mbps()), "fallback": self.fallback}


def link_traces(cfg: RunConfig, n_links: int) -> list[LinkTrace]:
    """One trace per link index: ``network.traces`` reused cyclically (synthetic when empty),
    started at ``trace_offset_s`` and long enough for the session plus the grace time.
    Link *i* of every scheduler gets the identical trace."""
    from traces import ops
    from traces.paths import open_trace, trace_hash

    specs = list(cfg.network.traces) or ["synthetic"]
    span_s = cfg.session.duration_s + PLAYER_GRACE_S + 30.0
    out = []
    cache: dict[tuple[str, int], LinkTrace] = {}
    for i in range(n_links):
        spec = specs[i % len(specs)]
        # Synthetic links differ per link index (seeded), real ones come from their file.
        seed = cfg.seed + (i if spec.startswith("synthetic") else 0)
        key = (spec, seed)
        if key not in cache:
            tr = open_trace(spec, seed=seed, duration_s=span_s + cfg.network.trace_offset_s)
            fallback = str(tr.meta.get("fallback", ""))
            tr = ops.window(tr, cfg.network.trace_offset_s, span_s)
            cache[key] = LinkTrace(spec, tr, trace_hash(tr), fallback)
        out.append(cache[key])
    return out


def player_feeds(cfg: RunConfig, catalog: Path) -> list[dict]:
    """Per player index, the ``feed`` section of its config (players.feed.FeedPlan:
    videos, watch_s, watch_pmf, swipe), the same for every scheduler. Player *i* uses seed
    ``cfg.seed * 1000 + i``."""
    from players import feed as pfeed

    return [pfeed.plan_feed(catalog, length=cfg.feed.length, seed=cfg.seed * 1000 + i,
                            swipe=cfg.feed.swipe).to_config()
            for i in range(cfg.players.count)]


# -------------------------------------------------------------------------- processes


def wait_for_json_line(proc: subprocess.Popen, key: str, value: str, deadline_s: float,
                       what: str) -> dict:
    """Read ``proc``'s stdout until a JSON line with ``{key: value}``; fail on exit or deadline."""
    assert proc.stdout is not None
    end = time.monotonic() + deadline_s
    buf = b""
    fd = proc.stdout.fileno()
    while True:
        left = end - time.monotonic()
        if left <= 0:
            raise RunError(f"{what}: not ready within {deadline_s:.0f} s")
        ready, _, _ = select.select([fd], [], [], min(left, 0.5))
        if not ready:
            if proc.poll() is not None:
                raise RunError(f"{what}: exited with status {proc.returncode} before it was ready")
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            proc.wait(timeout=5)
            raise RunError(f"{what}: exited with status {proc.returncode} before it was ready")
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict) and rec.get(key) == value:
                return rec


def stop_process(proc: subprocess.Popen, wait_s: float = TERM_WAIT_S) -> int | None:
    """SIGTERM, wait up to ``wait_s``, then SIGKILL; returns the exit status."""
    if proc.poll() is None:
        try:
            proc.terminate()
            proc.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=wait_s)
        except ProcessLookupError:
            pass
    return proc.returncode


def start_origin(net, catalog: Path, access_log: Path, stderr_path: Path) -> subprocess.Popen:
    """``testbed serve`` on the topology's origin host; returns once it listens (deadline
    ``ORIGIN_LISTEN_DEADLINE_S``), after stopping it if it does not. Stop it with
    ``stop_origin``."""
    ip, port = net.origin_bind(net.origin_host)
    # The child keeps its own copy of the log's descriptor; ours closes at once.
    with open(stderr_path, "wb") as err:
        origin = net.popen(net.origin_host, [
            sys.executable, "-m", "testbed.cli", "serve", "--catalog", str(catalog),
            "--host", ip, "--port", str(port), "--access-log", str(access_log)],
            stdout=subprocess.PIPE, stderr=err)
    try:
        wait_for_json_line(origin, "event", "listening", ORIGIN_LISTEN_DEADLINE_S,
                           f"origin on {net.origin_host} ({ip}:{port})")
    except BaseException:
        stop_origin(origin)
        raise
    return origin


def stop_origin(origin: subprocess.Popen) -> None:
    """Stop an origin from ``start_origin`` and close our end of its stdout."""
    stop_process(origin)
    if origin.stdout is not None:
        origin.stdout.close()


@contextmanager
def signals_raise() -> Iterator[None]:
    """SIGTERM (and SIGHUP) become ``RunInterrupted`` in the main thread while running."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, _frame):
        raise RunInterrupted(f"signal {signal.Signals(signum).name}")

    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


# -------------------------------------------------------------------------- progress


class EventTail:
    """Follows one player's event log and keeps its latest state (for the progress line)."""

    def __init__(self, path: Path):
        self.path = path
        self.offset = 0
        self.partial = b""
        self.state = "starting"
        self.position = -1
        self.stalls = 0
        self.t_s = 0.0
        self.bytes = 0

    def poll(self) -> None:
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self.offset)
                data = fh.read()
        except FileNotFoundError:
            return
        self.offset += len(data)
        data = self.partial + data
        lines = data.split(b"\n")
        self.partial = lines.pop()
        for line in lines:
            try:
                e = json.loads(line)
            except ValueError:
                continue
            self._apply(e)

    def _apply(self, e: dict) -> None:
        kind = e.get("event")
        self.t_s = max(self.t_s, float(e.get("t_s", 0.0)))
        if kind == "video_start":
            self.position, self.state = int(e.get("position", -1)), "startup"
        elif kind == "play_start" or kind == "stall_end":
            self.state = "playing"
        elif kind == "stall_start":
            self.state, self.stalls = "stalled", self.stalls + 1
        elif kind in ("download_done", "download_cancel"):
            self.bytes += int(e.get("bytes", 0))
        elif kind == "session_end":
            self.state = f"ended:{e.get('reason', '?')}"

    def short(self) -> str:
        return f"v{self.position} {self.state} st{self.stalls} {self.bytes / 1e6:.1f}MB"


class ProgressView:
    """One status line per update: elapsed/remaining and every player's state."""

    def __init__(self, stream: TextIO, enabled: bool, interval_s: float):
        self.stream = stream
        self.enabled = enabled
        self.tty = enabled and hasattr(stream, "isatty") and stream.isatty()
        self.interval_s = interval_s if self.tty else max(interval_s, 5.0)
        self._last = 0.0

    def show(self, label: str, elapsed_s: float, total_s: float, tails: list[EventTail],
             force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last < self.interval_s:
            return
        self._last = now
        players = " | ".join(f"p{i} {t.short()}" for i, t in enumerate(tails))
        left = max(0.0, total_s - elapsed_s)
        line = f"[{label}] {elapsed_s:5.1f}s elapsed, {left:5.1f}s left | {players}"
        if self.tty:
            self.stream.write("\r\x1b[K" + line[:400])
            if force:
                self.stream.write("\n")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


# -------------------------------------------------------------------------- the run


@dataclass
class _Player:
    label: str
    index: int          # player index within its scheduler
    host: str
    link: int           # link (trace) index
    proc: subprocess.Popen | None = None
    tail: EventTail | None = None
    bytes_before: dict = field(default_factory=dict)
    bytes_after: dict = field(default_factory=dict)
    started_mono: float = 0.0
    replay_wall_s: float | None = None


class Run:
    """State of one run; ``run_experiment`` is the way to use it."""

    def __init__(self, cfg: RunConfig, out_dir: str | os.PathLike | None, backend: str | None,
                 progress: bool, argv: list[str] | None, stream: TextIO):
        self.cfg = cfg
        self.backend = backend or cfg.network.backend
        self.progress = progress
        self.stream = stream
        self.run_id = new_run_id(cfg.name)
        self.root = Path(out_dir) if out_dir is not None else DEFAULT_RESULTS
        self.argv = argv
        self.view = ProgressView(stream, progress, 1.0)
        self.rd: RunDir | None = None
        self.backend_used: str = ""
        self.link_params: list = []
        self.players_meta: list[dict] = []

    def log(self, msg: str) -> None:
        if self.progress:
            print(f"run: {msg}", file=self.stream, flush=True)

    # The links engineer's API (testbed.emulation, docs/links.md); kept in one place.
    # One shaped link per player host: link k carries player k of this topology.
    def _open_backend(self, traces: list[LinkTrace], tag: str):
        from testbed.emulation import open_backend

        n = self.cfg.network
        options = {"compensate_tcp_overhead": n.compensate_tcp_overhead,
                   "queue_packets": n.queue_packets, "delay_ms": n.delay_ms,
                   "allow_no_delay": n.allow_no_delay, "bin_s": n.bin_s,
                   "loss_pct": n.loss_pct, "allow_no_loss": n.allow_no_loss}
        workdir = self.work / f"net-{tag}"
        workdir.mkdir(parents=True, exist_ok=True)
        # Short: backends put it into interface names (15 characters at most).
        short_id = f"{self.run_id[-4:]}{tag}"
        return open_backend(self.backend, n.topology, [t.trace for t in traces], options,
                            short_id, workdir)

    def execute(self) -> Path:
        cfg = self.cfg
        from testbed.emulation import resolve_backend

        self.backend_used = resolve_backend(self.backend)
        cat = ensure_catalog(cfg, self.progress)
        feeds = player_feeds(cfg, cat)
        labels = [e.display for e in cfg.schedulers]
        n_links = cfg.players.count
        traces = link_traces(cfg, n_links)
        meta = {
            "run_id": self.run_id, "name": cfg.name, "kind": "emulation",
            "config": to_dict(cfg), "config_source": cfg.source, "seed": cfg.seed,
            "mode": cfg.mode, "backend_requested": self.backend, "backend": self.backend_used,
            "schedulers": labels, "catalog": {"dir": str(cat),
                                              "hash": provenance.catalog_hash(cat)},
            "traces": [t.describe() for t in traces],
            "feeds": [{k: f[k] for k in ("videos", "watch_s", "swipe") if k in f}
                      for f in feeds],
            "device_profile": cfg.players.device_profile, "devices": list(cfg.players.devices),
            **provenance.collect(self.argv),
        }
        self.rd = RunDir.create(self.root, self.run_id, meta)
        for k, t in enumerate(traces):
            self.rd.write_link_trace(k, t.trace.times_s - t.trace.start_s, t.trace.rates_mbps,
                                     t.trace.duration_s)
        self.work = self.rd.path / "work"
        self.work.mkdir()
        self.log(f"run {self.run_id} -> {self.rd.path}")
        if cfg.mode == "serial":
            for s_i, entry in enumerate(cfg.schedulers):
                players = [_Player(entry.display, i, "", i) for i in range(cfg.players.count)]
                self._session(f"s{s_i}", players, traces, cat, feeds)
        else:
            players = [_Player(e.display, i, "", i) for e in cfg.schedulers
                       for i in range(cfg.players.count)]
            self._session("p", players, [traces[p.link] for p in players], cat, feeds)
        return self.rd.path

    def _session(self, tag: str, players: list[_Player], traces: list[LinkTrace], cat: Path,
                 feeds: list[dict]) -> None:
        """One topology: origin, replay, the given players (player k on link k)."""
        cfg = self.cfg
        sched = {e.display: e for e in cfg.schedulers}
        label = ",".join(dict.fromkeys(p.label for p in players))
        self.log(f"[{label}] building topology ({self.backend_used}, {len(players)} players)")
        with self._open_backend(traces, tag) as net:
            self.backend_used = getattr(net, "kind", self.backend_used)
            hosts = list(net.player_hosts)
            for k, p in enumerate(players):
                p.host = hosts[k]
            origin = None
            try:
                origin = start_origin(net, cat, self.work / f"origin-{tag}-access.jsonl",
                                      self.work / f"origin-{tag}.err")
                for p in players:
                    p.bytes_before = dict(net.interface_bytes(p.host))
                net.start_replay()
                replay_wall_s = time.time()
                for p in players:
                    p.replay_wall_s = replay_wall_s
                t0 = time.monotonic()
                for p in players:
                    e = sched[p.label]
                    pcfg = self._player_config(p, e, feeds[p.index], net.origin_url(p.host))
                    cpath = self.work / f"player-{p.label}-{p.index}.json"
                    cpath.write_text(json.dumps(pcfg, indent=2))
                    with open(self.work / f"player-{p.label}-{p.index}.err", "wb") as err:
                        p.proc = net.popen(p.host, [sys.executable, "-m", "players",
                                                    str(cpath)],
                                           stdout=err, stderr=subprocess.STDOUT)
                    p.tail = EventTail(self.rd.events_path(p.label, p.index))
                    p.started_mono = time.monotonic()
                self._wait_players(label, players, t0)
                for p in players:
                    p.bytes_after = dict(net.interface_bytes(p.host))
            finally:
                for p in players:
                    if p.proc is not None:
                        stop_process(p.proc)
                if origin is not None:
                    stop_origin(origin)
                # Also for an interrupted session: what the links applied until then.
                try:
                    params = _jsonable(net.applied_link_params())
                except Exception as exc:  # noqa: BLE001 - must not hide the session's own error
                    params = {"error": f"applied_link_params failed: {exc!r}"}
                self.link_params.append({"session": tag, "schedulers": label, "params": params})
                self._record_players(players, traces)

    def _player_config(self, p: _Player, entry, feed: dict, origin_url: str) -> dict:
        """The player process's config file (players engineer's schema, docs/player.md)."""
        cfg = self.cfg
        s = cfg.session
        assert self.rd is not None
        return {
            "origin_url": origin_url,
            "feed": feed,
            "scheduler": {"name": entry.name, "params": dict(entry.params),
                          "seed": cfg.seed * 1000 + p.index},
            "session": {"duration_s": s.duration_s, "window": s.window,
                        "max_parallel": s.max_parallel, "cancel_useless": s.cancel_useless,
                        "decide_interval_s": s.decide_interval_s,
                        "initial_throughput_mbps": s.initial_throughput_mbps},
            "devices": list(cfg.players.devices),
            "device_profile": cfg.players.device_profile,
            "decode": cfg.players.decode,
            "sample_interval_s": cfg.players.sample_interval_s,
            "events_path": str(self.rd.events_path(p.label, p.index)),
            "resources_path": str(self.rd.resources_path(p.label, p.index)),
            "summary_path": str(self.work / f"player-{p.label}-{p.index}.summary.json"),
            "qoe": {k: v for k, v in dataclasses.asdict(cfg.qoe).items() if v is not None},
        }

    def _wait_players(self, label: str, players: list[_Player], t0: float) -> None:
        total_s = self.cfg.session.duration_s
        deadline = t0 + total_s + PLAYER_GRACE_S
        while True:
            for p in players:
                assert p.tail is not None
                p.tail.poll()
            elapsed = time.monotonic() - t0
            running = [p for p in players if p.proc is not None and p.proc.poll() is None]
            self.view.show(label, elapsed, total_s, [p.tail for p in players],
                           force=not running)
            if not running:
                break
            if time.monotonic() > deadline:
                names = ", ".join(f"{p.label}/player{p.index}" for p in running)
                raise RunError(f"players still running {PLAYER_GRACE_S:.0f} s after the "
                               f"session should have ended: {names}")
            time.sleep(0.2)
        failed = [p for p in players if p.proc is not None and p.proc.returncode != 0]
        if failed:
            p = failed[0]
            err = self.work / f"player-{p.label}-{p.index}.err"
            tail = err.read_text(errors="replace").strip().splitlines()[-1:] if err.exists() else []
            raise RunError(f"{p.label}/player{p.index} on {p.host} exited with status "
                           f"{p.proc.returncode}: {tail[0] if tail else '(no output)'} "
                           f"(log: {err})")

    def _record_players(self, players: list[_Player], traces: list[LinkTrace]) -> None:
        assert self.rd is not None
        for k, p in enumerate(players):
            t = traces[k]
            rec = {"scheduler": p.label, "player": p.index, "host": p.host, "link": p.link,
                   "trace": t.trace.name if t.spec.startswith("synthetic") or t.fallback
                   else t.spec, "trace_hash": t.hash,
                   "exit_status": None if p.proc is None else p.proc.returncode,
                   "replay_wall_s": p.replay_wall_s}
            for key in ("rx_bytes", "tx_bytes"):
                if key in p.bytes_before and key in p.bytes_after:
                    rec[f"interface_{key}"] = int(p.bytes_after[key]) - int(p.bytes_before[key])
            self.players_meta.append(rec)
        self.rd.update_metadata(players=self.players_meta, backend=self.backend_used,
                                link_params=self.link_params)


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=str))


def finish(rd: RunDir, complete: bool, reason: str = "", plots: bool = True,
           log: Callable[[str], None] | None = None) -> None:
    """Summary and plots from whatever the run wrote, then the complete flag."""
    try:
        rd.write_summary()
    except Exception as exc:  # a broken log must not hide the run's own error
        reason = (reason + "; " if reason else "") + f"summary failed: {exc}"
        complete = False
    if plots:
        try:
            from testbed import report

            report.plot_run(rd)
        except Exception as exc:
            if log:
                log(f"plots failed: {exc}")
    rd.mark_complete(complete, reason)


def run_experiment(cfg: RunConfig, out_dir: str | os.PathLike | None = None,
                   backend: str | None = None, progress: bool = True,
                   argv: list[str] | None = None, plots: bool = True,
                   stream: TextIO | None = None) -> Path:
    """Run ``cfg``; returns the run directory (``<out_dir>/<run-id>``, default results/).

    backend: overrides ``network.backend``. An exception or signal still leaves the run
    directory (``complete: false``) and is re-raised."""
    run = Run(cfg, out_dir, backend, progress, argv, stream or sys.stderr)
    try:
        with signals_raise():
            path = run.execute()
    except BaseException as exc:
        if run.rd is not None:
            reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            finish(run.rd, False, reason, plots, run.log)
            run.log(f"incomplete run kept in {run.rd.path} ({reason})")
        raise
    finish(run.rd, True, "", plots, run.log)
    return path
