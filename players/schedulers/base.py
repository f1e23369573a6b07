"""The scheduler interface: a frozen observation in, one action out, registered by name.

Schedulers see only an ``Observation`` (built by ``players.session.SessionModel`` for both
the emulated player and the simulator, so one scheduler class runs unchanged in both) and
answer with one ``Action``. They never reach into the player.

Positions are feed positions (0 = first video of the session). The observation carries
the current video and the next ``window - 1`` videos; a download may target any of them,
in any order (chunk k+1 of a later video before chunk k of an earlier one is legal).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

# ---------------------------------------------------------------------------------------
# What a scheduler may see
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RepInfo:
    """One representation of a video, as the scheduler sees it.

    name: ``pixel/h264/250``, ``pixel/hevc/500``, ``prompt/local/r8``.
    kind: ``pixel`` or ``prompt``.
    bitrate_kbps: nominal (pixel) or measured (prompt) bitrate.
    chunk_bytes: size of each chunk (bytes); chunk 0 of a prompt representation includes
        the one-off first-frame data.
    chunk_quality_mbps: quality of each chunk in Mbps-equivalent (DESIGN.md: for pixel the
        nominal bitrate, for prompt the H.264 bitrate of equal measured quality).
    decode_s: expected decode seconds per chunk on each device (from the device profile).
    """

    name: str
    kind: str
    bitrate_kbps: float
    chunk_bytes: tuple[int, ...]
    chunk_quality_mbps: tuple[float, ...]
    decode_s: Mapping[str, float] = field(default_factory=dict)

    def decodable_on(self, device: str) -> bool:
        return device in self.decode_s


@dataclass(frozen=True)
class VideoView:
    """One video of the window.

    position: feed position. duration_s / chunk_s / n_chunks: content layout.
    representations: available representations (pixel by bitrate ascending, then prompt).
    downloaded: chunk index -> representation name of the completed download in use.
    decoded: chunks decoded and playable.
    watch_pmf: P(the user swipes during second j of this video), j = 0..; the last entry is
        the probability of watching to the end. Distribution only: never the sampled time.
    """

    position: int
    video_id: str
    duration_s: float
    chunk_s: float
    n_chunks: int
    representations: tuple[RepInfo, ...]
    downloaded: Mapping[int, str]
    decoded: frozenset[int]
    watch_pmf: tuple[float, ...]

    def rep(self, name: str) -> RepInfo:
        for r in self.representations:
            if r.name == name:
                return r
        raise KeyError(f"video {self.video_id}: no representation {name!r}")

    def reps_of_kind(self, kind: str) -> tuple[RepInfo, ...]:
        return tuple(r for r in self.representations if r.kind == kind)

    def prob_reaching_s(self, content_s: float) -> float:
        """P(the user is still watching when content second ``content_s`` plays)."""
        return prob_reaching(self.watch_pmf, content_s)


def prob_reaching(watch_pmf: tuple[float, ...], content_s: float) -> float:
    """P(still watching at content second ``content_s``) under a per-second watch pmf
    whose last entry is "watched to the end" (``VideoView.prob_reaching_s``)."""
    if content_s <= 0:
        return 1.0
    whole = min(int(math.floor(content_s)), len(watch_pmf) - 1)
    frac = content_s - math.floor(content_s)
    left = 1.0 - sum(watch_pmf[:whole])
    if whole < len(watch_pmf) - 1:
        left -= frac * watch_pmf[whole]
    return max(0.0, min(1.0, left))


@dataclass(frozen=True)
class InFlight:
    """A download in progress (bytes_done so far of bytes_total; started at started_s)."""

    position: int
    chunk: int
    representation: str
    bytes_done: int
    bytes_total: int
    started_s: float


@dataclass(frozen=True)
class DeviceState:
    """A decode device: its FIFO-by-playout-order queue and when it will be free (estimate)."""

    name: str
    queued: tuple[tuple[int, int], ...]
    busy_until_s: float


@dataclass(frozen=True)
class Observation:
    """Everything a scheduler may see at one decision.

    t_s: session time (s since session start). current: feed position on screen.
    playhead_s: content seconds played of the current video. stalled: the player is
    waiting for a frame of the current video (startup included).
    videos: the window, current video first. in_flight: downloads in progress.
    max_parallel: connection limit. throughput_bps: the player's estimate (bit/s).
    devices: decode devices. bytes_downloaded: session total so far.
    """

    t_s: float
    current: int
    playhead_s: float
    stalled: bool
    videos: tuple[VideoView, ...]
    in_flight: tuple[InFlight, ...]
    max_parallel: int
    throughput_bps: float
    devices: tuple[DeviceState, ...]
    bytes_downloaded: int

    def video(self, position: int) -> VideoView:
        i = position - self.current
        if 0 <= i < len(self.videos):
            return self.videos[i]
        raise KeyError(f"position {position} is outside the window")

    def buffer_s(self, position: int | None = None) -> float:
        """Playable (decoded, contiguous) seconds ahead of the playhead: the playout slack.

        For a later video, decoded contiguous seconds from its start.
        """
        pos = self.current if position is None else position
        v = self.video(pos)
        start = self.playhead_s if pos == self.current else 0.0
        c = int(start // v.chunk_s) if start < v.duration_s else v.n_chunks
        end = c
        while end < v.n_chunks and end in v.decoded:
            end += 1
        return max(0.0, min(end * v.chunk_s, v.duration_s) - start)

    def is_in_flight(self, position: int, chunk: int) -> bool:
        return any(f.position == position and f.chunk == chunk for f in self.in_flight)

    @property
    def free_slots(self) -> int:
        return self.max_parallel - len(self.in_flight)


# ---------------------------------------------------------------------------------------
# What a scheduler may answer
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Download:
    """Fetch chunk ``chunk`` of the video at feed ``position`` in ``representation``; decode
    it on ``device`` (None: the representation's first device, ``cpu`` for pixels)."""

    position: int
    chunk: int
    representation: str
    device: str | None = None


@dataclass(frozen=True)
class Wait:
    """Decide again after ``seconds`` (or earlier, when a download or decode completes)."""

    seconds: float


Action = Download | Wait


class IllegalAction(ValueError):
    """A scheduler answered something the observation does not allow."""


def check_action(obs: Observation, action: Any) -> None:
    """Raise ``IllegalAction`` unless ``action`` is legal in ``obs``."""
    if isinstance(action, Wait):
        if not (action.seconds > 0 and math.isfinite(action.seconds)):
            raise IllegalAction(f"Wait.seconds must be finite and > 0, got {action.seconds}")
        return
    if not isinstance(action, Download):
        raise IllegalAction(f"not an action: {action!r}")
    if obs.free_slots <= 0:
        raise IllegalAction("Download with no free connection slot")
    try:
        v = obs.video(action.position)
    except KeyError as exc:
        raise IllegalAction(str(exc)) from None
    if not 0 <= action.chunk < v.n_chunks:
        raise IllegalAction(f"video {v.video_id}: chunk {action.chunk} out of 0..{v.n_chunks - 1}")
    try:
        rep = v.rep(action.representation)
    except KeyError as exc:
        raise IllegalAction(str(exc)) from None
    if obs.is_in_flight(action.position, action.chunk):
        raise IllegalAction(f"video {v.video_id} chunk {action.chunk} is already in flight")
    if v.downloaded.get(action.chunk) == action.representation:
        raise IllegalAction(f"video {v.video_id} chunk {action.chunk} already downloaded")
    if action.position == obs.current and (action.chunk + 1) * v.chunk_s <= obs.playhead_s:
        raise IllegalAction(f"video {v.video_id} chunk {action.chunk} was already played")
    if action.device is not None and not rep.decodable_on(action.device):
        raise IllegalAction(
            f"{rep.name} has no decode profile for device {action.device!r} "
            f"(known: {sorted(rep.decode_s)})"
        )


def legal_downloads(obs: Observation) -> list[Download]:
    """Every legal Download in ``obs`` (default device), in a stable order."""
    if obs.free_slots <= 0:
        return []
    out = []
    for v in obs.videos:
        first = int(obs.playhead_s // v.chunk_s) if v.position == obs.current else 0
        for c in range(first, v.n_chunks):
            if obs.is_in_flight(v.position, c):
                continue
            for r in v.representations:
                if v.downloaded.get(c) != r.name:
                    out.append(Download(v.position, c, r.name))
    return out


# ---------------------------------------------------------------------------------------
# The scheduler base class and the registry
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NoParams:
    """Parameters of a scheduler that has none."""


class Scheduler:
    """Base class. Subclasses set ``name``, a frozen dataclass ``Params`` and ``decide``.

    params: an instance of ``Params`` (validated there); seed: for any randomness, which
    must come from ``self.rng`` only so runs repeat exactly.
    """

    name: ClassVar[str] = ""
    Params: ClassVar[type] = NoParams

    def __init__(self, params: Any = None, seed: int = 0) -> None:
        import random

        self.params = params if params is not None else self.Params()
        if not isinstance(self.params, self.Params):
            raise TypeError(f"{self.name}: params must be {self.Params.__name__}")
        self.seed = seed
        self.rng = random.Random(seed)

    def decide(self, obs: Observation) -> Action:  # pragma: no cover - abstract
        raise NotImplementedError

    # Optional hooks: no-ops unless a scheduler cares.
    def on_chunk_done(self, obs: Observation, position: int, chunk: int, bytes_: int,
                      seconds: float) -> None:
        """A download finished (bytes_ in seconds)."""

    def on_swipe(self, obs: Observation, position: int, watch_s: float) -> None:
        """The user left the video at ``position`` after ``watch_s`` content seconds."""

    def config(self) -> dict:
        """{"name": ..., "params": {...}}: enough to rebuild this scheduler with ``create``."""
        return {"name": self.name, "params": dataclasses.asdict(self.params)}


_REGISTRY: dict[str, type[Scheduler]] = {}


def register(cls: type[Scheduler]) -> type[Scheduler]:
    """Class decorator: make ``cls`` available under ``cls.name``."""
    if not cls.name:
        raise ValueError(f"{cls.__qualname__} has no name")
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"scheduler name {cls.name!r} registered twice")
    _REGISTRY[cls.name] = cls
    return cls


def _load_builtin() -> None:
    # Importing the package's modules runs their @register decorators.
    import importlib
    import pkgutil

    import players.schedulers as pkg

    for mod in pkgutil.iter_modules(pkg.__path__):
        if mod.name != "base" and not mod.name.startswith("_"):
            importlib.import_module(f"players.schedulers.{mod.name}")


def available() -> list[str]:
    _load_builtin()
    return sorted(_REGISTRY)


def get_class(name: str) -> type[Scheduler]:
    _load_builtin()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown scheduler {name!r}; "
                       f"valid: {', '.join(sorted(_REGISTRY))}") from None


def make_params(cls: type[Scheduler], params: Mapping[str, Any] | None) -> Any:
    """Build ``cls.Params`` from a mapping, rejecting unknown keys with the valid ones."""
    params = dict(params or {})
    fields = {f.name: f for f in dataclasses.fields(cls.Params)}
    unknown = sorted(set(params) - set(fields))
    if unknown:
        raise ValueError(
            f"scheduler {cls.name!r}: unknown parameter(s) {unknown}; valid: {sorted(fields)}"
        )
    return cls.Params(**params)


def create(name: str, params: Mapping[str, Any] | None = None, seed: int = 0) -> Scheduler:
    """The one way to build a scheduler from config: ``create("fixed", {"seconds": 4})``."""
    cls = get_class(name)
    return cls(make_params(cls, params), seed=seed)
