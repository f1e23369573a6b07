"""The discrete-event simulator: ``players.session.SessionModel`` driven by events, not a clock.

It runs the very scheduler classes, observations and actions of the emulated player
(players/player.py) and follows the same decide loop, so a scheduler cannot tell the two
apart except by the link and decode timings:

1. swipes since the last step go to ``scheduler.on_swipe``; with ``cancel_useless``,
   in-flight downloads of videos already left are cancelled (partial bytes become waste);
2. completed downloads -> ``finish_download`` (+ ``on_chunk_done``), completed decodes ->
   ``decode_done``;
3. every idle device starts its next decode (``next_decode``), taking ``decode_s`` of the
   representation on that device (the device profile), times ``decode_scale``;
4. while a connection slot is free and the scheduler is not waiting: ``decide(obs)``,
   ``check_action`` (an illegal answer is logged as ``illegal_action`` and becomes
   ``Wait(decide_interval_s)``), a ``Download`` starts at once, a ``Wait(s)`` pauses
   deciding for ``min(s, decide_interval_s)`` unless something completes, is cancelled or
   the user swipes first;
5. jump to the next event: a download's first byte or last byte, a decode's end, the Wait's
   end, or the next playback change (``next_change_s``).

The link (``LinkModel``) is a trace-driven bottleneck shared by the active downloads in
equal parts (processor sharing), computed exactly with ``Trace.time_to_send`` /
``Trace.bits_between``: no time stepping. A download first waits ``request_latency_s``
(request RTT and server time) and, with ``queue_bytes``, until the data already queued
at the bottleneck for the other downloads has left (no capacity used meanwhile), then
receives its share. Nothing here
is random: the only randomness is the scheduler's own seeded ``rng`` and the feed's
sampled watch times, so the same inputs give bit-identical event logs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from players.schedulers.base import Download, IllegalAction, Scheduler, Wait, check_action
from players.session import SessionModel, VideoSpec

# Bits below which a flow counts as finished (float rounding of exact trace integrals).
_DONE_BITS = 1e-2


class SimulationError(RuntimeError):
    """The simulated session cannot go on (e.g. a link with no capacity, ever)."""


@dataclass(frozen=True)
class SimSettings:
    """How one simulated session runs (the emulated player's session settings, plus link
    and decode timing).

    session_s: session length (s). window / max_parallel / cancel_useless /
    decide_interval_s / initial_throughput_bps: as in ``players.player.PlayerConfig``.
    devices: decode devices (first: default for pixel chunks).
    request_latency_s: time from a request to its first byte (s); the flow uses no link
        capacity meanwhile (RTT plus server time; 0 = an ideal link).
    queue_bytes: bottleneck queue (bytes). A new download's first byte also waits until
        the queued data of the downloads already running has left: min(queue_bytes,
        their bytes still to come) at the link's rate (a FIFO queue in front of a fair
        share; 0 = pure processor sharing).
    decode_scale: multiplies every decode time of the profile (1 = the profile as is).
    max_events: safety limit on loop iterations (a scheduler that never lets time pass).
    """

    session_s: float = 60.0
    window: int = 5
    max_parallel: int = 2
    cancel_useless: bool = True
    decide_interval_s: float = 0.5
    initial_throughput_bps: float = 1e6
    devices: tuple[str, ...] = ("cpu",)
    request_latency_s: float = 0.0
    queue_bytes: int = 0
    decode_scale: float = 1.0
    max_events: int = 10_000_000

    def __post_init__(self) -> None:
        if not (self.session_s > 0 and math.isfinite(self.session_s)):
            raise ValueError(f"session_s: expected a finite number > 0, got {self.session_s}")
        if self.decide_interval_s <= 0:
            raise ValueError(f"decide_interval_s: expected > 0, got {self.decide_interval_s}")
        if self.request_latency_s < 0 or self.decode_scale < 0 or self.queue_bytes < 0:
            raise ValueError("request_latency_s, queue_bytes and decode_scale must be >= 0")


@dataclass
class _Flow:
    key: tuple[int, int]
    bits_total: float
    active_from_s: float  # first byte may arrive from here on
    bits_done: float = 0.0

    @property
    def bits_left(self) -> float:
        return self.bits_total - self.bits_done


class LinkModel:
    """A trace-driven bottleneck shared equally by the flows that are past their request
    latency (processor sharing), advanced exactly from event to event.

    trace: a ``traces.trace.Trace`` (capacity in Mbit/s, looping); t0_s: the trace time
    that session time 0 maps to.
    """

    def __init__(self, trace, t0_s: float = 0.0, queue_bytes: int = 0) -> None:
        self.trace = trace
        self.t0_s = t0_s
        self.queue_bits = queue_bytes * 8.0
        self.flows: dict[tuple[int, int], _Flow] = {}

    def add(self, key: tuple[int, int], size_bytes: int, now_s: float, latency_s: float) -> None:
        start = now_s + latency_s
        if self.queue_bits > 0:
            ahead = min(self.queue_bits, sum(f.bits_left for f in self.flows.values()))
            if ahead > 0:
                start = max(start, self.trace.time_to_send(self.t0_s + now_s, ahead) - self.t0_s)
        self.flows[key] = _Flow(key, float(size_bytes) * 8.0, start)

    def remove(self, key: tuple[int, int]) -> int:
        """Drop a flow; returns the whole bytes it had received."""
        f = self.flows.pop(key)
        return int(f.bits_done // 8)

    def bytes_done(self, key: tuple[int, int]) -> int:
        return int(self.flows[key].bits_done // 8)

    def _active(self, now_s: float) -> list[_Flow]:
        return [f for f in self.flows.values() if f.active_from_s <= now_s]

    def next_event_s(self, now_s: float) -> float:
        """The next time a flow starts receiving or finishes (inf: none will)."""
        nxt = math.inf
        active = []
        for f in self.flows.values():
            if f.active_from_s > now_s:
                nxt = min(nxt, f.active_from_s)
            else:
                active.append(f)
        if active:
            least = min(f.bits_left for f in active)
            if least <= _DONE_BITS:
                return now_s
            t = self.trace.time_to_send(self.t0_s + now_s, least * len(active)) - self.t0_s
            nxt = min(nxt, t)
        return nxt

    def advance(self, now_s: float, to_s: float) -> list[tuple[int, int]]:
        """Deliver bits from ``now_s`` to ``to_s`` (no flow starts in between: the caller
        stops at every ``next_event_s``); returns the keys of flows now complete, in key
        order."""
        active = self._active(now_s)
        if active and to_s > now_s:
            share = self.trace.bits_between(self.t0_s + now_s, self.t0_s + to_s) / len(active)
            for f in active:
                f.bits_done = min(f.bits_total, f.bits_done + share)
        done = []
        for f in self._active(to_s):
            if f.bits_left <= _DONE_BITS * max(1.0, len(self.flows)):
                f.bits_done = f.bits_total
                done.append(f.key)
        return sorted(done)


def simulate_session(
    feed: Sequence[VideoSpec],
    watch_s: Sequence[float],
    trace,
    scheduler: Scheduler,
    settings: SimSettings = SimSettings(),
    emit: Callable[[dict], None] | None = None,
    trace_t0_s: float = 0.0,
    on_decision: Callable[[object, object], None] | None = None,
) -> list[dict]:
    """Run one session and return its event log (``players.session`` schema).

    feed / watch_s: the videos and sampled watch times (``players.feed``). trace: the
    link's capacity. scheduler: a fresh scheduler (its seed fixes its randomness).
    emit: also receives each event as it happens. trace_t0_s: trace time at session 0.
    on_decision: called with (observation, action) after each decide (for benchmarks).
    """
    s = settings
    events: list[dict] = []

    def _emit(e: dict) -> None:
        events.append(e)
        if emit is not None:
            emit(e)

    model = SessionModel(
        feed, watch_s, emit=_emit, devices=s.devices, window=s.window,
        max_parallel=s.max_parallel, session_s=s.session_s,
        initial_throughput_bps=s.initial_throughput_bps,
    )
    link = LinkModel(trace, trace_t0_s, s.queue_bytes)
    decoding: dict[str, float] = {}  # device -> decode end time
    wait_until = -math.inf
    last_current = model.current
    t = 0.0
    for _ in range(s.max_events):
        model.advance(t)
        if model.ended:
            break
        changed = False
        # 1. swipes and useless downloads
        while last_current < model.current:
            left = last_current
            watch = next((e["watch_s"] for e in reversed(events)
                          if e["event"] == "swipe" and e["position"] == left), 0.0)
            scheduler.on_swipe(model.observation(), left, float(watch))
            last_current += 1
            changed = True
        if s.cancel_useless:
            for p, c, _ in model.useless_downloads():
                model.cancel_download(p, c, link.remove((p, c)), reason="swiped")
                changed = True
        # 2. completions (the link was advanced to t below; flows done are complete)
        for key in [k for k, f in sorted(link.flows.items())
                    if f.bits_done >= f.bits_total and f.active_from_s <= t]:
            link.remove(key)
            d = model.in_flight[key]
            model.finish_download(key[0], key[1], request_s=round(d.started_s, 6))
            scheduler.on_chunk_done(model.observation(), key[0], key[1], d.bytes_total,
                                    max(t - d.started_s, 1e-6))
            changed = True
        for dev in sorted(decoding):
            if decoding[dev] <= t:
                del decoding[dev]
                run = model.devices[dev].running
                rep = model.feed[run[0]].rep(run[2])
                model.decode_done(dev, round(rep.decode_s.get(dev, 0.0) * s.decode_scale, 6),
                                  _frames(model.feed[run[0]], run[1]))
                changed = True
        if changed:
            model.advance(t)
            if model.ended:
                break
        # 3. idle devices start their next decode
        for dev in model.devices:
            if dev in decoding:
                continue
            nxt = model.next_decode(dev)
            if nxt is None:
                continue
            p, c, rep_name = nxt
            dur = model.feed[p].rep(rep_name).decode_s.get(dev, 0.0) * s.decode_scale
            model.decode_started(dev, dur)
            decoding[dev] = t + dur
        # 4. decide
        if changed:
            wait_until = -math.inf
        if len(model.in_flight) < model.max_parallel and t >= wait_until:
            for p, c in list(link.flows):
                model.download_progress(p, c, link.bytes_done((p, c)))
        while len(model.in_flight) < model.max_parallel and t >= wait_until:
            obs = model.observation()
            action = scheduler.decide(obs)
            if on_decision is not None:
                on_decision(obs, action)
            try:
                check_action(obs, action)
            except IllegalAction as exc:
                _emit({"t_s": round(t, 6), "event": "illegal_action", "action": repr(action),
                       "error": str(exc)})
                action = Wait(s.decide_interval_s)
            if isinstance(action, Wait):
                wait_until = t + min(action.seconds, s.decide_interval_s)
                break
            assert isinstance(action, Download)
            size = model.start_download(action.position, action.chunk, action.representation,
                                        action.device)
            link.add((action.position, action.chunk), size, t, s.request_latency_s)
        # 5. next event
        t_next = min(link.next_event_s(t), model.next_change_s(),
                     min(decoding.values(), default=math.inf),
                     wait_until if wait_until > t else math.inf)
        if math.isinf(t_next):
            if link.flows:
                raise SimulationError(
                    f"t={t:.3f} s: the link trace {getattr(trace, 'name', '')!r} carries no "
                    f"more bits; {len(link.flows)} download(s) can never finish")
            t_next = t + s.decide_interval_s  # nothing can change: the scheduler waits
        t_next = max(t_next, t)
        link.advance(t, t_next)
        for p, c in list(link.flows):
            model.download_progress(p, c, link.bytes_done((p, c)))
        t = t_next
    else:
        raise SimulationError(f"no end after {s.max_events} steps (t={t:.3f} s)")
    return events


def _frames(spec: VideoSpec, chunk: int) -> int:
    """Frames of a chunk when the spec does not say: 30 fps (only logged)."""
    start = chunk * spec.chunk_s
    return max(1, round((min(start + spec.chunk_s, spec.duration_s) - start) * 30))


# ----------------------------------------------------------------------------- experiments


def settings_from_config(cfg) -> SimSettings:
    """``SimSettings`` of a ``testbed.config.RunConfig`` (same session settings as the
    emulated players get; request latency defaults to the shaped links' RTT)."""
    s, sim = cfg.session, cfg.simulator
    latency = sim.request_latency_s
    if latency is None:
        latency = 2.0 * cfg.network.delay_ms / 1000.0
    return SimSettings(
        session_s=s.duration_s, window=s.window, max_parallel=s.max_parallel,
        cancel_useless=s.cancel_useless, decide_interval_s=s.decide_interval_s,
        initial_throughput_bps=s.initial_throughput_mbps * 1e6,
        devices=tuple(cfg.players.devices), request_latency_s=latency,
        queue_bytes=sim.queue_bytes, decode_scale=sim.decode_scale,
    )


def simulate_experiment(cfg, out_dir=None, progress: bool = True, argv=None,
                        plots: bool = True, run_id: str | None = None):
    """``testbed simulate``: every scheduler of ``cfg`` x every player, in simulation, into
    ``<out_dir>/<run-id>/`` (the layout of ``testbed.results``, backend ``simulator``).

    Player *i* gets the feed, watch times, trace and scheduler seed that ``testbed run``
    gives player *i* (``testbed.run.player_feeds`` / ``link_traces``, seed
    ``cfg.seed * 1000 + i``). Returns the run directory.
    """
    import json
    import sys
    import time
    from pathlib import Path

    from origin import manifest as mf
    from players import feed as pfeed
    from players.schedulers.base import create
    from testbed import provenance
    from testbed.config import to_dict
    from testbed.results import RunDir, new_run_id
    from testbed.run import DEFAULT_RESULTS, ensure_catalog, finish, link_traces, player_feeds

    def log(msg: str) -> None:
        if progress:
            print(f"simulate: {msg}", file=sys.stderr, flush=True)

    settings = settings_from_config(cfg)
    cat = ensure_catalog(cfg, progress)
    feeds = player_feeds(cfg, cat)
    traces = link_traces(cfg, cfg.players.count)
    catalog = mf.load_catalog(cat)
    manifests = {vid: catalog.load_video(vid)
                 for vid in sorted({v for f in feeds for v in f["videos"]})}
    labels = [e.display for e in cfg.schedulers]
    run_id = run_id or new_run_id(cfg.name)
    meta = {
        "run_id": run_id, "name": cfg.name, "kind": "simulation", "backend": "simulator",
        "config": to_dict(cfg), "config_source": cfg.source, "seed": cfg.seed,
        "mode": cfg.mode, "schedulers": labels,
        "catalog": {"dir": str(cat), "hash": provenance.catalog_hash(cat)},
        "traces": [t.describe() for t in traces],
        "feeds": [{k: f[k] for k in ("videos", "watch_s", "swipe") if k in f} for f in feeds],
        "device_profile": cfg.players.device_profile, "devices": list(cfg.players.devices),
        "simulator": {"request_latency_s": settings.request_latency_s,
                      "queue_bytes": settings.queue_bytes,
                      "decode_scale": settings.decode_scale,
                      "link": "processor sharing of the trace capacity, exact; first byte "
                              "after request latency and the queued bytes ahead"},
        **provenance.collect(argv),
    }
    rd = RunDir.create(Path(out_dir) if out_dir is not None else DEFAULT_RESULTS, run_id, meta)
    for k, t in enumerate(traces):
        rd.write_link_trace(k, t.trace.times_s - t.trace.start_s, t.trace.rates_mbps,
                            t.trace.duration_s)
    players_meta = []
    try:
        specs_by_player = []
        for f in feeds:
            plan = pfeed.FeedPlan(tuple(f["videos"]), tuple(f["watch_s"]),
                                  tuple(tuple(p) for p in f["watch_pmf"]), f["swipe"], 0)
            specs_by_player.append(pfeed.build_specs(
                manifests, plan, devices=settings.devices,
                device_profile=cfg.players.device_profile))
        for entry in cfg.schedulers:
            for i, f in enumerate(feeds):
                t0 = time.perf_counter()
                sched = create(entry.name, entry.params, seed=cfg.seed * 1000 + i)
                path = rd.events_path(entry.display, i)
                with open(path, "w", encoding="utf-8") as fh:
                    simulate_session(specs_by_player[i], f["watch_s"], traces[i].trace, sched,
                                     settings,
                                     emit=lambda e: fh.write(json.dumps(e) + "\n"))
                lt = traces[i]
                players_meta.append({
                    "scheduler": entry.display, "player": i, "host": "", "link": i,
                    "trace": lt.trace.name if lt.spec.startswith("synthetic") or lt.fallback
                    else lt.spec, "trace_hash": lt.hash,
                    "wall_s": round(time.perf_counter() - t0, 6)})
                log(f"[{entry.display}] player{i}: {time.perf_counter() - t0:.2f} s wall")
        rd.update_metadata(players=players_meta)
    except BaseException as exc:
        rd.update_metadata(players=players_meta)
        finish(rd, False, f"{type(exc).__name__}: {exc}", plots, log)
        raise
    finish(rd, True, "", plots, log)
    return rd.path


# ----------------------------------------------------------------------------- content
# The short-video challenge's own content (real per-chunk sizes of 7 videos at 750 / 1200 /
# 1850 kbps, with each video's real retention curve), optionally with prompt
# representations described by a ``PromptProfile``: for studies at scale and for the
# headline comparison, where no pixel bytes are needed.

CHALLENGE_LADDER_KBPS = (750, 1200, 1850)


@dataclass(frozen=True)
class PromptProfile:
    """Prompt representation of every chunk: ``kbps`` of prompt data per content second,
    plus ``first_chunk_extra_bytes`` in chunk 0 (the first frame's latent), quality
    ``quality_mbps`` (H.264-equivalent), and decode seconds per 1-s chunk per device.
    ``source`` says where the numbers come from (recorded in results)."""

    name: str
    kbps: float
    first_chunk_extra_bytes: int
    quality_mbps: float
    decode_s: tuple[tuple[str, float], ...]
    source: str = ""


# Numbers and where they come from (docs/simulator.md). No decode of a prompt happens here:
# these profiles describe hardware and models this machine lacks.
PROMPT_PROFILES = {
    # Published Promptus figures (REFERENCE.md): ~225 kbps at r=8, keyframe interval 10,
    # 30 fps; first-frame latent ~66 KB, counted in chunk 0. Quality: "better than H.265 at
    # the same very low bitrate"; taking H.265 ~2x as efficient as H.264, about H.264 at
    # 450 kbps (an assumption: no H.264-equivalent figure is published).
    "promptus-r8": PromptProfile(
        "prompt/promptus/r8", 225.0, 66_000, 0.45, (("cpu", 0.81), ("npu", 0.1)),
        "REFERENCE.md Promptus: 225 kbps at r=8, 66 KB first latent; q assumed = H.264 "
        "450 kbps; decode (used without a codec profile): cpu 27 ms/frame x 30 (REFERENCE.md, "
        "local model here), npu 0.1 s per chunk (assumed)"),
}

# Decode devices of a player, and the ``codec.profiles`` profile that times their decodes.
DEVICE_PROFILES = {
    "cpu-only": ("cpu",),
    "npu-like": ("cpu", "npu"),
}
CODEC_PROFILE_OF = {"cpu-only": "cpu-local", "npu-like": "npu"}
# The same device profiles for real players (the ``[players]`` fields of a run config):
# cpu-only decodes prompts for real on this machine (timed as measured); this machine has
# no NPU, so npu-like players hold every decode to the ``codec.profiles`` "npu" latency
# without decoding.
PLAYER_DEVICE_SETTINGS = {
    "cpu-only": {"devices": list(DEVICE_PROFILES["cpu-only"]), "device_profile": "measured",
                 "decode": "real"},
    "npu-like": {"devices": list(DEVICE_PROFILES["npu-like"]),
                 "device_profile": CODEC_PROFILE_OF["npu-like"], "decode": "profile"},
}


def challenge_content(root=None, prompt: PromptProfile | None = None,
                      devices: Sequence[str] = ("cpu",), pixel_decode_s: float = 0.01,
                      codec_profile: str | None = None):
    """``{video id: (VideoSpec, WatchDist)}`` of the short-video challenge's 7 videos from
    the trace directory (``short-video-challenge/video-sizes`` and ``user-retention``).

    prompt: add this prompt representation (decodable on the ``devices`` its profile
    names). pixel_decode_s: decode seconds of a pixel chunk on ``cpu``. codec_profile: a
    ``codec.profiles`` profile that times every decode instead (30 frames a chunk at
    256x256; pixel chunks: ``pixel_decode_s`` x the profile's CPU factor).
    """
    from pathlib import Path

    from players.schedulers.base import RepInfo
    from traces.paths import trace_dir
    from traces.swipe import load_retention

    base = Path(root) if root is not None else trace_dir()
    if base is None:
        raise SimulationError("the challenge content needs the trace directory (set "
                              "PROMPTBED_TRACES or place shared/traces beside the checkout)")
    sizes_dir = base / "short-video-challenge" / "video-sizes"
    ret_dir = base / "short-video-challenge" / "user-retention"
    if not sizes_dir.is_dir():
        raise SimulationError(f"{sizes_dir}: missing (expected the challenge's video-sizes)")
    dec_prompt = dict(prompt.decode_s) if prompt is not None else {}
    if codec_profile is not None:
        from codec import profiles

        dec_prompt = {d: profiles.chunk_decode_s(codec_profile, d, 30, "prompt")
                      for d in devices}
        pixel_decode_s = profiles.chunk_decode_s(codec_profile, "cpu", 30, "pixel",
                                                 measured_cpu_s=pixel_decode_s)
    out = {}
    for vdir in sorted(p for p in sizes_dir.iterdir() if p.is_dir()):
        reps = []
        n = None
        for level, kbps in enumerate(CHALLENGE_LADDER_KBPS):
            f = vdir / f"video_size_{level}"
            try:
                sizes = tuple(int(x) for x in f.read_text().split())
            except (OSError, ValueError) as exc:
                raise SimulationError(
                    f"{f}: expected one integer byte count a line ({exc})") from None
            if n is not None and len(sizes) != n:
                raise SimulationError(f"{f}: {len(sizes)} chunks, expected {n}")
            n = len(sizes)
            reps.append(RepInfo(f"pixel/h264/{kbps}", "pixel", float(kbps), sizes,
                                (kbps / 1000.0,) * n, {"cpu": pixel_decode_s}))
        if prompt is not None:
            per_chunk = round(prompt.kbps * 1000 / 8)
            sizes = (per_chunk + prompt.first_chunk_extra_bytes,) + (per_chunk,) * (n - 1)
            dec = {d: s for d, s in dec_prompt.items() if d in devices and s is not None}
            if dec:
                reps.append(RepInfo(prompt.name, "prompt", prompt.kbps, sizes,
                                    (prompt.quality_mbps,) * n, dec))
        dist = load_retention(ret_dir / vdir.name, length_s=float(n))
        spec = VideoSpec(vdir.name, float(n), 1.0, n, tuple(reps),
                         tuple(float(x) for x in dist.pmf))
        out[vdir.name] = (spec, dist)
    return out


def challenge_feed(length: int, seed: int, **content_kw):
    """(specs, watch_s) of a ``length``-video feed over the challenge videos: order by
    ``players.feed.feed_order``, watch times by ``traces.swipe.sample_watch_times`` from
    the real retention curves (same seed -> same feed and swipes for every scheduler)."""
    from players.feed import feed_order
    from traces.swipe import sample_watch_times

    content = challenge_content(**content_kw)
    ids = feed_order(sorted(content), length, seed)
    specs = [content[v][0] for v in ids]
    watch = sample_watch_times([content[v][1] for v in ids], seed)
    return specs, [float(w) for w in watch]
