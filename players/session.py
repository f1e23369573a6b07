"""The clock-free model of one viewing session, shared by the emulated player and the simulator.

A driver owns time and I/O: the emulated player drives this model with the wall clock,
real downloads and real decodes; the simulator drives it with discrete events. Both call
``advance(t_s)`` before telling the model anything new, so playback, stalls, swipes and the
observations schedulers see follow one set of rules in both worlds.

Playback rules (DESIGN.md definitions):
- The current video plays from content second 0 at real-time speed whenever the chunk under
  the playhead is decoded; otherwise the player waits: *startup* before the video's first
  frame, a *stall* afterwards.
- The user leaves the video when the playhead reaches its sampled watch time (content
  seconds; the video's duration when watched to the end). Reaching the watch time at a
  chunk boundary whose next chunk is missing is a swipe, not a stall.
- The session ends at ``session_s`` or after the last video of the feed.

Event log schema (one dict per event, written as JSON lines by the driver; units in names).
Every event has ``t_s`` (session seconds) and ``event``:
  session_start {n_videos, session_s}
  video_start {position, video}                       the video came on screen
  play_start {position, startup_s}                    its first frame showed
  stall_start {position, playhead_s}
  stall_end {position, playhead_s, stall_s, truncated}
  chunk_played {position, video, chunk, representation, played_s, chunk_s, bytes, quality_mbps}
  swipe {position, video, watch_s}
  download_start {position, video, chunk, representation, bytes_total, device}
  download_done {position, video, chunk, representation, bytes, duration_s}
  download_cancel {position, video, chunk, representation, bytes, reason}
  decode_start {position, chunk, representation, device}
  decode_done {position, chunk, representation, device, decode_s, frames}
  decode_skip {position, chunk, representation, device}  queued for a video already left
  decode_error {position, chunk, representation, device, error}  the decoder rejected it
  session_end {reason, startup_open}                  reason: duration | feed_end | aborted
Drivers may add fields (e.g. first_byte_s); they never remove these.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from players.schedulers.base import (
    DeviceState,
    InFlight,
    Observation,
    RepInfo,
    VideoView,
)

EPS_S = 1e-9


@dataclass(frozen=True)
class VideoSpec:
    """Static facts of one feed entry (built from its manifest by ``players.feed``)."""

    video_id: str
    duration_s: float
    chunk_s: float
    n_chunks: int
    representations: tuple[RepInfo, ...]
    watch_pmf: tuple[float, ...]

    def rep(self, name: str) -> RepInfo:
        for r in self.representations:
            if r.name == name:
                return r
        raise KeyError(f"video {self.video_id}: no representation {name!r}")


@dataclass
class _Download:
    position: int
    chunk: int
    representation: str
    bytes_total: int
    started_s: float
    device: str
    bytes_done: int = 0


@dataclass
class _Device:
    name: str
    queued: list  # [(position, chunk, representation)]
    busy_until_s: float = 0.0
    running: tuple | None = None


class SessionModel:
    """State of one session; see the module docstring for the rules and the event schema.

    feed: the videos in order. watch_s: sampled watch time per feed position (content s).
    devices: decode device names (first one is the default for pixel chunks).
    window: videos visible to the scheduler (current included).
    max_parallel: concurrent downloads allowed. session_s: session length (None: feed end).
    emit: receives each event dict. initial_throughput_bps: estimate before any sample.
    """

    def __init__(
        self,
        feed: Sequence[VideoSpec],
        watch_s: Sequence[float],
        *,
        emit: Callable[[dict], None],
        devices: Sequence[str] = ("cpu",),
        window: int = 5,
        max_parallel: int = 1,
        session_s: float | None = None,
        initial_throughput_bps: float = 1e6,
        throughput_samples: int = 5,
    ) -> None:
        if len(feed) == 0:
            raise ValueError("empty feed")
        if len(watch_s) != len(feed):
            raise ValueError(f"watch_s has {len(watch_s)} entries for {len(feed)} videos")
        if window < 1 or max_parallel < 1:
            raise ValueError("window and max_parallel must be >= 1")
        if not devices:
            raise ValueError("at least one decode device is needed")
        self.feed = tuple(feed)
        # A user sees at least the first frame; the watch time never exceeds the video.
        self.watch_s = tuple(
            min(max(float(w), 1e-3), v.duration_s) for w, v in zip(watch_s, self.feed)
        )
        self._emit = emit
        self.window = window
        self.max_parallel = max_parallel
        self.session_s = session_s
        self.devices = {d: _Device(d, []) for d in devices}
        self.default_device = devices[0]
        self._tput_init = initial_throughput_bps
        self._tput_n = throughput_samples
        self._tput: list[float] = []

        self.t_s = 0.0
        self.current = 0
        self.playhead_s = 0.0
        self.mode = "startup"  # startup | playing | stalled | ended
        self._mode_since_s = 0.0
        self._video_started_s = 0.0
        self._chunk_played_s: dict[int, float] = {}
        self.downloaded: list[dict[int, str]] = [dict() for _ in self.feed]
        self.decoded: list[dict[int, str]] = [dict() for _ in self.feed]
        self.in_flight: dict[tuple[int, int], _Download] = {}
        self.bytes_downloaded = 0
        self.end_reason: str | None = None

        self._emit_event("session_start", n_videos=len(self.feed), session_s=session_s)
        self._emit_event("video_start", position=0, video=self.feed[0].video_id)

    # ------------------------------------------------------------------ time & playback
    @property
    def ended(self) -> bool:
        return self.mode == "ended"

    def advance(self, t_s: float) -> None:
        """Play forward to session time ``t_s`` with what is decoded now."""
        if t_s < self.t_s - 1e-6:
            raise ValueError(f"time went backwards: {t_s} < {self.t_s}")
        end = math.inf if self.session_s is None else self.session_s
        while not self.ended:
            if self.t_s >= end - EPS_S:
                self.finish("duration")
                return
            horizon = min(t_s, end)
            w = self.watch_s[self.current]
            if self.mode == "playing" and self.playhead_s >= w - EPS_S:
                self._swipe()
                continue
            lim = self._playable_until()
            if lim > self.playhead_s + EPS_S:
                if self.mode != "playing":
                    self._enter_playing()
                if self.t_s >= horizon - EPS_S:
                    return
                dt = min(horizon - self.t_s, lim - self.playhead_s)
                self._play(dt)
                self.t_s += dt
                if self.playhead_s >= lim - EPS_S:
                    self.playhead_s = lim
                    if lim >= w - EPS_S:
                        self._swipe()
                    else:
                        self._enter_stall()
                continue
            if self.mode == "playing":
                self._enter_stall()
            self.t_s = max(self.t_s, horizon)
            if horizon < end:
                return

    def next_change_s(self) -> float:
        """When playback changes by itself (buffer runs out, swipe, session end) if nothing
        new is decoded; ``inf`` while waiting for a decode."""
        if self.ended:
            return math.inf
        end = self.session_s if self.session_s is not None else math.inf
        lim = self._playable_until()
        if lim > self.playhead_s + EPS_S:
            return min(end, self.t_s + (lim - self.playhead_s))
        return end

    def finish(self, reason: str) -> None:
        """End the session now (reason: duration | feed_end | aborted)."""
        if self.ended:
            return
        startup_open = self.mode == "startup"
        if self.mode == "stalled":
            self._emit_event(
                "stall_end", position=self.current, playhead_s=self.playhead_s,
                stall_s=self.t_s - self._mode_since_s, truncated=True,
            )
        self._flush_chunks_played()
        self.mode = "ended"
        self.end_reason = reason
        for d in list(self.in_flight.values()):
            self.cancel_download(d.position, d.chunk, d.bytes_done, reason="session_end")
        self._emit_event("session_end", reason=reason, startup_open=startup_open,
                         startup_open_s=self.t_s - self._video_started_s if startup_open else 0.0)

    def _playable_until(self) -> float:
        v = self.feed[self.current]
        dec = self.decoded[self.current]
        # A playhead on a chunk boundary (within rounding) needs the next chunk.
        end = int((self.playhead_s + EPS_S) // v.chunk_s)
        while end < v.n_chunks and end in dec:
            end += 1
        return min(end * v.chunk_s, v.duration_s, self.watch_s[self.current])

    def _play(self, dt: float) -> None:
        v = self.feed[self.current]
        pos = self.playhead_s
        stop = pos + dt
        while pos < stop - EPS_S:
            c = min(int((pos + EPS_S) // v.chunk_s), v.n_chunks - 1)
            boundary = min((c + 1) * v.chunk_s, v.duration_s)
            step = min(stop, boundary) - pos
            self._chunk_played_s[c] = self._chunk_played_s.get(c, 0.0) + step
            pos += step
            if pos >= boundary - EPS_S:
                self._emit_chunk_played(c)
        self.playhead_s = stop

    def _emit_chunk_played(self, c: int) -> None:
        played = self._chunk_played_s.pop(c, 0.0)
        if played <= 0:
            return
        v = self.feed[self.current]
        rep_name = self.decoded[self.current][c]
        rep = v.rep(rep_name)
        self._emit_event(
            "chunk_played", position=self.current, video=v.video_id, chunk=c,
            representation=rep_name, played_s=played, chunk_s=v.chunk_s, bytes=rep.chunk_bytes[c],
            quality_mbps=rep.chunk_quality_mbps[c],
        )

    def _flush_chunks_played(self) -> None:
        for c in sorted(self._chunk_played_s):
            self._emit_chunk_played(c)

    def _enter_playing(self) -> None:
        if self.mode == "startup":
            self._emit_event("play_start", position=self.current,
                             startup_s=self.t_s - self._video_started_s)
        elif self.mode == "stalled":
            self._emit_event("stall_end", position=self.current, playhead_s=self.playhead_s,
                             stall_s=self.t_s - self._mode_since_s, truncated=False)
        self.mode = "playing"
        self._mode_since_s = self.t_s

    def _enter_stall(self) -> None:
        self.mode = "stalled"
        self._mode_since_s = self.t_s
        self._emit_event("stall_start", position=self.current, playhead_s=self.playhead_s)

    def _swipe(self) -> None:
        v = self.feed[self.current]
        self._flush_chunks_played()
        self._emit_event("swipe", position=self.current, video=v.video_id,
                         watch_s=self.playhead_s)
        self.current += 1
        self.playhead_s = 0.0
        if self.current >= len(self.feed):
            self.current = len(self.feed) - 1
            self.mode = "playing"  # nothing open: the last video ended normally
            self.finish("feed_end")
            return
        self.mode = "startup"
        self._mode_since_s = self.t_s
        self._video_started_s = self.t_s
        self._emit_event("video_start", position=self.current,
                         video=self.feed[self.current].video_id)

    # ------------------------------------------------------------------ downloads
    def start_download(self, position: int, chunk: int, representation: str,
                       device: str | None = None) -> int:
        """Record a download the driver starts now; returns its size (bytes)."""
        v = self.feed[position]
        rep = v.rep(representation)
        dev = device or self._default_device_for(rep)
        size = rep.chunk_bytes[chunk]
        self.in_flight[(position, chunk)] = _Download(position, chunk, representation, size,
                                                      self.t_s, dev)
        self._emit_event("download_start", position=position, video=v.video_id, chunk=chunk,
                         representation=representation, bytes_total=size, device=dev)
        return size

    def download_progress(self, position: int, chunk: int, bytes_done: int) -> None:
        d = self.in_flight.get((position, chunk))
        if d is not None:
            d.bytes_done = bytes_done

    def finish_download(self, position: int, chunk: int, **extra) -> str:
        """The download completed now; queue its decode. Returns the decode device."""
        d = self.in_flight.pop((position, chunk))
        dur = max(self.t_s - d.started_s, 1e-6)
        concurrent = 1 + len(self.in_flight)
        self._tput.append(d.bytes_total * 8 / dur * concurrent)
        del self._tput[: -self._tput_n]
        self.bytes_downloaded += d.bytes_total
        self.downloaded[position][chunk] = d.representation
        self._emit_event("download_done", position=position,
                         video=self.feed[position].video_id, chunk=chunk,
                         representation=d.representation, bytes=d.bytes_total,
                         duration_s=dur, **extra)
        self.devices[d.device].queued.append((position, chunk, d.representation))
        return d.device

    def cancel_download(self, position: int, chunk: int, bytes_done: int, reason: str) -> None:
        """Stop counting a download (its partial bytes become waste)."""
        d = self.in_flight.pop((position, chunk), None)
        if d is None:
            return
        self.bytes_downloaded += bytes_done
        self._emit_event("download_cancel", position=position,
                         video=self.feed[position].video_id, chunk=chunk,
                         representation=d.representation, bytes=bytes_done, reason=reason)

    def useless_downloads(self) -> list[tuple[int, int, int]]:
        """In-flight downloads of videos already left: (position, chunk, bytes_done)."""
        return [(d.position, d.chunk, d.bytes_done) for d in self.in_flight.values()
                if d.position < self.current]

    def _default_device_for(self, rep: RepInfo) -> str:
        if self.default_device in rep.decode_s or not rep.decode_s:
            return self.default_device
        for name in self.devices:
            if name in rep.decode_s:
                return name
        return self.default_device

    # ------------------------------------------------------------------ decoding
    def next_decode(self, device: str) -> tuple[int, int, str] | None:
        """Take the queued chunk of ``device`` that plays first; drop chunks of videos
        already left (decode_skip). None when the queue is empty or the device is busy."""
        dev = self.devices[device]
        if dev.running is not None:
            return None
        while dev.queued:
            dev.queued.sort(key=lambda x: (x[0], x[1]))
            pos, chunk, rep = dev.queued.pop(0)
            if pos < self.current:
                self._emit_event("decode_skip", position=pos, chunk=chunk,
                                 representation=rep, device=device)
                continue
            dev.running = (pos, chunk, rep)
            return pos, chunk, rep
        return None

    def decode_started(self, device: str, expected_s: float) -> None:
        dev = self.devices[device]
        pos, chunk, rep = dev.running
        dev.busy_until_s = self.t_s + expected_s
        self._emit_event("decode_start", position=pos, chunk=chunk, representation=rep,
                         device=device)

    def decode_done(self, device: str, decode_s: float, frames: int, **extra) -> None:
        dev = self.devices[device]
        pos, chunk, rep = dev.running
        dev.running = None
        dev.busy_until_s = self.t_s
        self.decoded[pos][chunk] = rep
        self._emit_event("decode_done", position=pos, chunk=chunk, representation=rep,
                         device=device, decode_s=decode_s, frames=frames, **extra)

    def decode_failed(self, device: str, error: str) -> None:
        """The running decode of ``device`` failed: free the device and forget the download
        (the chunk may be fetched again; its bytes stay counted, as waste)."""
        dev = self.devices[device]
        pos, chunk, rep = dev.running
        dev.running = None
        dev.busy_until_s = self.t_s
        if self.downloaded[pos].get(chunk) == rep:
            del self.downloaded[pos][chunk]
        self._emit_event("decode_error", position=pos, chunk=chunk, representation=rep,
                         device=device, error=error)

    # ------------------------------------------------------------------ observation
    def throughput_bps(self) -> float:
        if not self._tput:
            return self._tput_init
        return len(self._tput) / sum(1.0 / max(x, 1.0) for x in self._tput)

    def observation(self) -> Observation:
        videos = []
        for pos in range(self.current, min(self.current + self.window, len(self.feed))):
            v = self.feed[pos]
            videos.append(VideoView(
                position=pos, video_id=v.video_id, duration_s=v.duration_s,
                chunk_s=v.chunk_s, n_chunks=v.n_chunks, representations=v.representations,
                downloaded=dict(self.downloaded[pos]),
                decoded=frozenset(self.decoded[pos]), watch_pmf=v.watch_pmf,
            ))
        return Observation(
            t_s=self.t_s, current=self.current, playhead_s=self.playhead_s,
            stalled=self.mode in ("startup", "stalled"), videos=tuple(videos),
            in_flight=tuple(
                InFlight(d.position, d.chunk, d.representation, d.bytes_done, d.bytes_total,
                         d.started_s)
                for d in sorted(self.in_flight.values(), key=lambda d: (d.position, d.chunk))
            ),
            max_parallel=self.max_parallel, throughput_bps=self.throughput_bps(),
            devices=tuple(self._device_state(d) for d in self.devices.values()),
            bytes_downloaded=self.bytes_downloaded,
        )

    def _device_state(self, d: _Device) -> DeviceState:
        queued = [(p, c) for p, c, _ in d.queued]
        if d.running is not None:
            queued.insert(0, (d.running[0], d.running[1]))
        return DeviceState(d.name, tuple(queued), max(d.busy_until_s, self.t_s))

    # ------------------------------------------------------------------ events
    def _emit_event(self, event: str, **fields) -> None:
        self._emit({"t_s": round(self.t_s, 6), "event": event, **fields})
