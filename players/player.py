"""The emulated player: one OS process driving ``players.session.SessionModel`` with the wall
clock, real HTTP downloads from the origin and real decodes.

``python -m players CONFIG.json`` (config schema: ``PlayerConfig``; docs/player.md).

Setup (not on the session clock): fetch ``/catalog.json`` and the feed's manifests from the
origin, build the VideoSpecs (``players.feed``), the scheduler (``players.schedulers.base.
create``), one ``DecodeWorker`` per device, the ``Downloader``. Session time 0 is when the
first video comes on screen.

The loop, repeated until the session ends (each step first calls ``model.advance(now)``):
1. swipes since the last step go to ``scheduler.on_swipe``; with ``cancel_useless``, in-flight
   downloads of videos already left are cancelled (partial bytes become waste);
2. finished downloads -> ``finish_download`` (decode queued), failed ones -> cancelled with
   reason ``error`` plus a ``download_error`` event; finished decodes -> ``decode_done``,
   rejected chunks -> ``decode_failed`` (a ``decode_error`` event);
3. every idle device starts its next decode on its worker thread;
4. decide: while a connection slot is free and the scheduler is not waiting, ask
   ``decide(obs)``; ``check_action`` every answer (an illegal one is logged as
   ``illegal_action`` and becomes ``Wait(decide_interval_s)``); a ``Download`` starts at
   once, a ``Wait(s)`` pauses deciding for ``min(s, decide_interval_s)`` unless something
   completes, is cancelled or the user swipes first;
5. sleep until the next wake-up: a completion, the Wait's end, or the next playback change.

SIGTERM (or SIGINT) ends the session with ``session_end: aborted``; the event log keeps
everything written so far and the summary is still written. Exit status: 0 when the session
ended (duration, feed end, or aborted by a signal); 1 on a failure (one line on stderr);
2 on a bad config.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from origin import manifest as mf
from players import feed as pfeed
from players.accounting import QoEWeights, summarize
from players.decode import DecodeError, DecodeWorker
from players.downloader import Downloader, DownloadError, Transfer
from players.resources import ResourceSampler
from players.schedulers.base import Download, IllegalAction, Wait, check_action, create
from players.session import SessionModel

# A session whose downloads keep failing (origin gone) stops instead of spinning.
MAX_CONSECUTIVE_ERRORS = 20


class PlayerConfigError(ValueError):
    """The player config is invalid (message names the file and the field)."""


@dataclass(frozen=True)
class PlayerConfig:
    """One player's config (JSON). See docs/player.md for an example.

    origin_url: ``http://host:port`` of the origin. videos / watch_s: the feed (ids and
    sampled watch time per position, content s). watch_pmf: per position (None: computed from
    the catalog with ``swipe``). scheduler / params / seed: ``create(scheduler, params, seed)``.
    duration_s: session length (s). window, max_parallel, cancel_useless, decide_interval_s,
    initial_throughput_mbps: session parameters. devices: decode devices (``cpu`` first for
    pixel chunks). device_profile: ``measured`` or a ``codec.profiles`` name (holds each decode
    to that latency). decode: ``real`` | ``profile``. representations: restrict to these
    (None: all). sample_interval_s: psutil period. events_path / resources_path /
    summary_path: outputs (resources/summary optional). qoe: weights.
    start_at_unix_s: when given, the session starts at this wall-clock time (``time.time()``)
    after setup, so many players can start together (benchmarks).
    """

    origin_url: str
    videos: tuple[str, ...]
    watch_s: tuple[float, ...]
    events_path: str
    scheduler: str = "no-preload"
    params: Mapping[str, Any] = field(default_factory=dict)
    seed: int = 0
    watch_pmf: tuple[tuple[float, ...], ...] | None = None
    swipe: str = "synthetic"
    duration_s: float | None = 60.0
    window: int = 5
    max_parallel: int = 2
    cancel_useless: bool = True
    decide_interval_s: float = 0.5
    initial_throughput_mbps: float = 1.0
    devices: tuple[str, ...] = ("cpu",)
    device_profile: str = "measured"
    decode: str = "real"
    representations: tuple[str, ...] | None = None
    sample_interval_s: float = 1.0
    resources_path: str | None = None
    summary_path: str | None = None
    qoe: QoEWeights = field(default_factory=QoEWeights)
    prompt_models: Mapping[str, str] = field(default_factory=dict)
    start_at_unix_s: float | None = None


def _fail(src: str, fld: str, expected: str, got: Any = None) -> PlayerConfigError:
    shown = repr(got)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return PlayerConfigError(f"{src}: field '{fld}': expected {expected}, got {shown}")


def config_from_dict(d: Any, source: str = "player config") -> PlayerConfig:
    """Validate a parsed player config (the schema ``testbed run`` writes)."""
    if not isinstance(d, dict):
        raise _fail(source, "(top level)", "a JSON object", d)
    known = {"origin_url", "feed", "scheduler", "session", "devices", "device_profile",
             "decode", "representations", "sample_interval_s", "events_path",
             "resources_path", "summary_path", "qoe", "prompt_models", "start_at_unix_s"}
    unknown = sorted(set(d) - known)
    if unknown:
        raise _fail(source, unknown[0], f"one of {sorted(known)}", unknown[0])

    def need(obj: dict, key: str, where: str, types, expected: str):
        if key not in obj:
            raise PlayerConfigError(f"{source}: field '{where}': missing")
        v = obj[key]
        if isinstance(v, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
            raise _fail(source, where, expected, v)
        if not isinstance(v, types):
            raise _fail(source, where, expected, v)
        return v

    def num(obj: dict, key: str, where: str, default, minimum=0.0, exclusive=True):
        if key not in obj:
            return default
        v = obj[key]
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        ok = ok and (v > minimum if exclusive else v >= minimum)
        if not ok:
            raise _fail(source, where, f"a number {'>' if exclusive else '>='} {minimum}", v)
        return v

    url = need(d, "origin_url", "origin_url", str, "an http:// URL")
    if not url.startswith("http://"):
        raise _fail(source, "origin_url", "an http:// URL", url)
    feed = need(d, "feed", "feed", dict, "an object {videos, watch_s}")
    videos = need(feed, "videos", "feed.videos", list, "a list of video ids")
    if not videos or not all(isinstance(v, str) and mf.is_valid_video_id(v) for v in videos):
        raise _fail(source, "feed.videos", "a non-empty list of video ids", videos)
    watch = need(feed, "watch_s", "feed.watch_s", list, "a list of seconds")
    if len(watch) != len(videos) or not all(
            isinstance(w, (int, float)) and not isinstance(w, bool) and w > 0 for w in watch):
        raise _fail(source, "feed.watch_s", f"{len(videos)} positive numbers (one per video)",
                    watch)
    pmf = feed.get("watch_pmf")
    if pmf is not None:
        if (not isinstance(pmf, list) or len(pmf) != len(videos) or not all(
                isinstance(p, list) and p and abs(sum(p) - 1) < 1e-3 for p in pmf)):
            raise _fail(source, "feed.watch_pmf", f"{len(videos)} lists summing to 1", pmf)
        pmf = tuple(tuple(float(x) for x in p) for p in pmf)
    swipe = feed.get("swipe", "synthetic")
    if swipe not in pfeed.SWIPE_MODELS:
        raise _fail(source, "feed.swipe", f"one of {pfeed.SWIPE_MODELS}", swipe)
    sch = d.get("scheduler", {"name": "no-preload"})
    if not isinstance(sch, dict):
        raise _fail(source, "scheduler", "an object {name, params, seed}", sch)
    name = need(sch, "name", "scheduler.name", str, "a scheduler name")
    params = sch.get("params", {}) or {}
    if not isinstance(params, dict):
        raise _fail(source, "scheduler.params", "an object", params)
    seed = sch.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise _fail(source, "scheduler.seed", "an integer", seed)
    s = d.get("session", {})
    if not isinstance(s, dict):
        raise _fail(source, "session", "an object", s)
    duration = s.get("duration_s", 60.0)
    if duration is not None:
        duration = num(s, "duration_s", "session.duration_s", 60.0)
    window = s.get("window", 5)
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise _fail(source, "session.window", "an integer >= 1", window)
    par = s.get("max_parallel", 2)
    if isinstance(par, bool) or not isinstance(par, int) or par < 1:
        raise _fail(source, "session.max_parallel", "an integer >= 1", par)
    cancel = s.get("cancel_useless", True)
    if not isinstance(cancel, bool):
        raise _fail(source, "session.cancel_useless", "true or false", cancel)
    devices = d.get("devices", ["cpu"])
    if not isinstance(devices, list) or not devices or not all(
            isinstance(x, str) and x for x in devices) or len(set(devices)) != len(devices):
        raise _fail(source, "devices", "a non-empty list of distinct device names", devices)
    profile = d.get("device_profile", "measured")
    if not isinstance(profile, str) or not profile:
        raise _fail(source, "device_profile", "'measured' or a profile name", profile)
    decode = d.get("decode", "real")
    if decode not in ("real", "profile"):
        raise _fail(source, "decode", "'real' or 'profile'", decode)
    reps = d.get("representations")
    if reps is not None and (not isinstance(reps, list) or not reps or not all(
            isinstance(r, str) and mf.is_valid_representation_name(r) for r in reps)):
        raise _fail(source, "representations", "a list of representation names", reps)
    events = need(d, "events_path", "events_path", str, "a file path")
    for key in ("resources_path", "summary_path"):
        if d.get(key) is not None and not isinstance(d[key], str):
            raise _fail(source, key, "a file path or null", d[key])
    q = d.get("qoe", {})
    if not isinstance(q, dict) or set(q) - {"mu", "lam", "download", "startup"}:
        raise _fail(source, "qoe", "an object with mu, lam, download, startup", q)
    qoe = QoEWeights(**{k: num(q, k, f"qoe.{k}", 0.0, exclusive=False) for k in q})
    models = d.get("prompt_models", {})
    if not isinstance(models, dict):
        raise _fail(source, "prompt_models", "an object model -> checkpoint path", models)
    return PlayerConfig(
        origin_url=url.rstrip("/"), videos=tuple(videos), watch_s=tuple(float(w) for w in watch),
        events_path=events, scheduler=name, params=dict(params), seed=seed, watch_pmf=pmf,
        swipe=swipe, duration_s=None if duration is None else float(duration), window=window,
        max_parallel=par, cancel_useless=cancel,
        decide_interval_s=float(num(s, "decide_interval_s", "session.decide_interval_s", 0.5)),
        initial_throughput_mbps=float(num(s, "initial_throughput_mbps",
                                          "session.initial_throughput_mbps", 1.0)),
        devices=tuple(devices), device_profile=profile, decode=decode,
        representations=None if reps is None else tuple(reps),
        sample_interval_s=float(num(d, "sample_interval_s", "sample_interval_s", 1.0)),
        resources_path=d.get("resources_path"), summary_path=d.get("summary_path"),
        qoe=qoe, prompt_models=dict(models),
        start_at_unix_s=(None if d.get("start_at_unix_s") is None else
                         float(num(d, "start_at_unix_s", "start_at_unix_s", None))),
    )


def load_config(path: str | os.PathLike) -> PlayerConfig:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise PlayerConfigError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        d = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PlayerConfigError(f"{path}: not JSON (line {exc.lineno}: {exc.msg})") from None
    return config_from_dict(d, str(path))


# ----------------------------------------------------------------------------- the player


class PlayerError(RuntimeError):
    """The session could not run (origin unreachable, bad manifest, repeated failures)."""


def _prompt_reps_on(device: str, specs) -> list[str]:
    """Names of the prompt representations the feed offers on ``device``: what its decode
    worker loads before the session starts."""
    return sorted({r.name for s in specs for r in s.representations
                   if r.kind == "prompt" and r.decodable_on(device)})


class Player:
    """One session. ``await Player(cfg).run()`` returns the summary dict."""

    def __init__(self, cfg: PlayerConfig) -> None:
        self.cfg = cfg
        self.events: list[dict] = []
        self._fh = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._t0 = 0.0
        self._t0_wall = 0.0
        self._wake = asyncio.Event()
        self._stop_reason: str | None = None
        self.exit_error: str | None = None

    # ---------------------------------------------------------------- clock & events
    def now(self) -> float:
        assert self._loop is not None
        return self._loop.time() - self._t0

    def _emit(self, e: dict) -> None:
        if e["event"] == "session_start":
            e["wall_s"] = self._t0_wall  # lets plots align the link trace (time.time())
        self.events.append(e)
        if self._fh is not None:
            self._fh.write(json.dumps(e) + "\n")
            self._fh.flush()

    def _log(self, event: str, **fields) -> None:
        """Driver events outside the session model's schema (errors, illegal actions)."""
        self._emit({"t_s": round(self.now(), 6), "event": event, **fields})

    def stop(self, reason: str = "aborted") -> None:
        """Ask the loop to end the session (signal handlers call this)."""
        self._stop_reason = reason
        self._wake.set()

    # ---------------------------------------------------------------- setup
    async def _fetch_specs(self, dl: Downloader):
        cfg = self.cfg
        try:
            cat = mf.parse_catalog(await dl.get_json("/catalog.json"),
                                   source=f"{cfg.origin_url}/catalog.json")
            manifests = {}
            for vid in sorted(set(cfg.videos)):
                if vid not in cat.video_ids:
                    raise PlayerError(f"feed video {vid!r} is not in the origin's catalog")
                manifests[vid] = mf.parse_video_manifest(
                    await dl.get_json(mf.manifest_url(vid)),
                    source=f"{cfg.origin_url}{mf.manifest_url(vid)}")
        except (DownloadError, mf.ManifestError) as exc:
            raise PlayerError(str(exc)) from None
        pmf = cfg.watch_pmf
        if pmf is None:
            dists = pfeed.watch_dists(cat, cfg.swipe)
            pmf = tuple(tuple(float(x) for x in dists[v].pmf) for v in cfg.videos)
        try:
            specs = pfeed.build_specs(manifests, cfg.videos, pmf, devices=cfg.devices,
                                      device_profile=cfg.device_profile,
                                      representations=cfg.representations)
        except pfeed.FeedError as exc:
            raise PlayerError(str(exc)) from None
        if any(r.kind == "pixel" for s in specs for r in s.representations) and \
                pfeed.PIXEL_DEVICE not in cfg.devices:
            raise PlayerError(f"devices {list(cfg.devices)}: pixel chunks decode on "
                              f"{pfeed.PIXEL_DEVICE!r}, which is missing")
        return manifests, specs

    # ---------------------------------------------------------------- run
    async def run(self) -> dict:
        cfg = self.cfg
        self._loop = asyncio.get_running_loop()
        self._t0 = self._loop.time()
        Path(cfg.events_path).parent.mkdir(parents=True, exist_ok=True)
        sampler = None
        async with Downloader(cfg.origin_url, cfg.max_parallel, clock=self.now) as dl:
            manifests, specs = await self._fetch_specs(dl)
            scheduler = create(cfg.scheduler, cfg.params, cfg.seed)
            workers = {d: DecodeWorker(d, mode=cfg.decode, prompt_models=cfg.prompt_models)
                       for d in cfg.devices}
            sizes = sorted({(m.width, m.height) for m in manifests.values()})
            for d, w in workers.items():
                w.warm_up([(name, *size) for name in _prompt_reps_on(d, specs)
                           for size in sizes])
            # Opened before the session clock starts: blocking here costs nothing.
            self._fh = open(cfg.events_path, "w", encoding="utf-8")  # noqa: ASYNC230, SIM115
            try:
                if cfg.resources_path is not None:
                    Path(cfg.resources_path).parent.mkdir(parents=True, exist_ok=True)
                    sampler = ResourceSampler(cfg.resources_path, cfg.sample_interval_s,
                                              clock=lambda: self._loop.time() - self._t0)
                if cfg.start_at_unix_s is not None:
                    await asyncio.sleep(max(0.0, cfg.start_at_unix_s - time.time()))
                self._t0 = self._loop.time()  # session time 0: the first video on screen
                self._t0_wall = time.time()
                if sampler is not None:
                    sampler.start()
                model = SessionModel(
                    specs, cfg.watch_s, emit=self._emit, devices=cfg.devices,
                    window=cfg.window, max_parallel=cfg.max_parallel,
                    session_s=cfg.duration_s,
                    initial_throughput_bps=cfg.initial_throughput_mbps * 1e6)
                try:
                    await self._loop_session(model, scheduler, dl, workers, manifests)
                finally:
                    if not model.ended:
                        model.advance(max(self.now(), model.t_s))
                        model.finish("aborted")
                    for w in workers.values():
                        w.close()
            finally:
                res = sampler.stop() if sampler is not None else {}
                self._fh.close()
                self._fh = None
        summary = summarize(self.events, cfg.qoe, res or None)
        summary["end_reason"] = model.end_reason
        summary["resources"] = res
        summary["scheduler"] = scheduler.config()
        if self.exit_error:
            summary["error"] = self.exit_error
        if cfg.summary_path is not None:
            Path(cfg.summary_path).parent.mkdir(parents=True, exist_ok=True)
            Path(cfg.summary_path).write_text(json.dumps(summary, indent=1) + "\n")
        return summary

    async def _loop_session(self, model: SessionModel, scheduler, dl: Downloader,
                            workers: dict, manifests: dict) -> None:
        cfg = self.cfg
        transfers: dict[tuple[int, int], Transfer] = {}
        done_dl: list[tuple[int, int, Transfer]] = []
        chunk_data: dict[tuple[int, int, str], bytes] = {}
        decoding: dict[str, asyncio.Future] = {}
        wait_until = -math.inf
        errors = 0
        last_current = model.current

        def wake(*_):
            self._wake.set()

        while True:
            self._wake.clear()
            now = self.now()
            model.advance(now)
            if self._stop_reason is not None and not model.ended:
                model.finish(self._stop_reason)
            if model.ended:
                break
            changed = False
            # 1. swipes and useless downloads
            while last_current < model.current:
                left = last_current
                watch = next((e["watch_s"] for e in reversed(self.events)
                              if e["event"] == "swipe" and e["position"] == left), 0.0)
                scheduler.on_swipe(model.observation(), left, float(watch))
                last_current += 1
                changed = True
            if cfg.cancel_useless:
                for p, c, _ in model.useless_downloads():
                    t = transfers.pop((p, c))
                    model.cancel_download(p, c, t.cancel(), reason="swiped")
                    changed = True
            # 2. completions
            for p, c, t in done_dl:
                if transfers.get((p, c)) is not t:
                    continue  # cancelled meanwhile
                del transfers[(p, c)]
                changed = True
                try:
                    data = t.task.result()
                except (DownloadError, OSError) as exc:
                    errors += 1
                    self._log("download_error", position=p, chunk=c, error=str(exc))
                    model.cancel_download(p, c, t.bytes_done, reason="error")
                    if errors >= MAX_CONSECUTIVE_ERRORS:
                        self.exit_error = f"{errors} downloads failed in a row; last: {exc}"
                        model.finish("aborted")
                        return
                    continue
                errors = 0
                d = model.in_flight[(p, c)]
                chunk_data[(p, c, d.representation)] = data
                model.finish_download(p, c, request_s=round(t.request_s, 6),
                                      first_byte_s=_r(t.first_byte_s),
                                      last_byte_s=_r(t.last_byte_s))
                scheduler.on_chunk_done(model.observation(), p, c, len(data),
                                        max(now - t.request_s, 1e-6))
            done_dl.clear()
            for dev, fut in list(decoding.items()):
                if not fut.done():
                    continue
                del decoding[dev]
                changed = True
                try:
                    r = fut.result()
                except DecodeError as exc:
                    model.decode_failed(dev, str(exc))
                    continue
                model.decode_done(dev, round(r.decode_s, 6), r.frames,
                                  work_s=round(r.work_s, 6))
            if changed:
                model.advance(self.now())
                if model.ended:
                    break
            # 3. idle devices start their next decode
            for dev, w in workers.items():
                if dev in decoding:
                    continue
                nxt = model.next_decode(dev)
                if nxt is None:
                    continue
                p, c, rep_name = nxt
                spec = model.feed[p]
                rep = spec.rep(rep_name)
                expected_s = rep.decode_s.get(dev, 0.0)
                hold = expected_s if (cfg.device_profile != "measured"
                                      or cfg.decode == "profile") else None
                frames = manifests[spec.video_id].representation(rep_name).chunks[c].frames
                data = chunk_data.pop((p, c, rep_name), b"")
                model.decode_started(dev, expected_s)
                fut = asyncio.ensure_future(w.decode_async(data, rep_name, frames, hold))
                fut.add_done_callback(wake)
                decoding[dev] = fut
            # drop data of chunks that will never be decoded (their video was left)
            for key in [k for k in chunk_data if k[0] < model.current]:
                del chunk_data[key]
            # 4. decide
            if changed:
                wait_until = -math.inf
            while model.observation().free_slots > 0 and self.now() >= wait_until:
                obs = model.observation()
                action = scheduler.decide(obs)
                try:
                    check_action(obs, action)
                except IllegalAction as exc:
                    self._log("illegal_action", action=repr(action), error=str(exc))
                    action = Wait(cfg.decide_interval_s)
                if isinstance(action, Wait):
                    wait_until = self.now() + min(action.seconds, cfg.decide_interval_s)
                    break
                assert isinstance(action, Download)
                size = model.start_download(action.position, action.chunk,
                                            action.representation, action.device)
                vid = model.feed[action.position].video_id
                key = (action.position, action.chunk)

                def progress(t: Transfer, key=key):
                    model.download_progress(key[0], key[1], t.bytes_done)

                t = dl.start(mf.chunk_url(vid, action.representation, action.chunk),
                             expected_bytes=size, on_progress=progress)
                transfers[key] = t

                def finished(_task, key=key, t=t):
                    if not _task.cancelled():
                        done_dl.append((key[0], key[1], t))
                        self._wake.set()

                t.task.add_done_callback(finished)
            # 5. sleep
            wake_at = min(model.next_change_s(),
                          wait_until if wait_until > self.now() else math.inf)
            timeout = None if math.isinf(wake_at) else max(0.0, wake_at - self.now())
            if timeout is None and cfg.duration_s is None and not transfers and not decoding:
                # nothing can change any more: the scheduler waits for nothing
                timeout = cfg.decide_interval_s
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except TimeoutError:
                pass
        for t in transfers.values():
            t.cancel()


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 6)


# ----------------------------------------------------------------------------- process


def main(argv: list[str] | None = None) -> int:
    """``python -m players CONFIG.json``; see the module docstring for exit statuses."""
    import argparse

    ap = argparse.ArgumentParser(
        prog="python -m players",
        description="Run one headless player session against an origin (config: JSON, "
                    "schema in docs/player.md). Writes the event log (JSON lines), the "
                    "psutil resource log and the summary JSON the config names.")
    ap.add_argument("config", help="player config JSON (written by `testbed run`)")
    args = ap.parse_args(argv)
    try:
        cfg = load_config(args.config)
    except PlayerConfigError as exc:
        print(f"player: {exc}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_amain(cfg))
    except (PlayerError, KeyError, ValueError, OSError) as exc:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"player: {msg}", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 -- a bug (e.g. in a scheduler): keep the trace, end on one line
        import traceback

        traceback.print_exc(file=sys.stderr)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        print(f"player: internal error: {type(exc).__name__}: {first}", file=sys.stderr)
        return 1


async def _amain(cfg: PlayerConfig) -> int:
    player = Player(cfg)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, player.stop, "aborted")
    summary = await player.run()
    if player.exit_error:
        print(f"player: {player.exit_error}", file=sys.stderr)
        return 1
    print(json.dumps({"event": "player_done", "end_reason": summary["end_reason"],
                      "stall_s": summary["stall_s"], "bytes_downloaded":
                      summary["bytes_downloaded"]}), flush=True)
    return 0
