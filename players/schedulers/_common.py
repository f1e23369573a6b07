"""Small helpers the baseline schedulers share: which chunk is next, how much is buffered,
which pixel representation to take (by buffer or by throughput), a RobustMPC-style
throughput estimate, and Dashlet-style chunk risk.

Private (leading underscore): the registry does not import it as a scheduler. Everything
here is a pure function of an ``Observation`` (or of explicit numbers), so the schedulers
built on it stay deterministic.

Representations: schedulers that are not computation-aware fetch pixel representations
only (``pixel_ladder``). A video with no pixel representation falls back to its single
cheapest representation (smallest mean chunk size), whatever its kind, so such a video can
still be played.
"""

from __future__ import annotations

import bisect
import functools
import itertools
import math
from collections.abc import Sequence

from players.schedulers.base import Observation, RepInfo, VideoView, prob_reaching

# Step of the time grid used for start-time distributions (s). Watch-time pmfs are per
# second; half a second keeps the middle of each second on the grid.
GRID_S = 0.5


# ------------------------------------------------------------------------ validation
def need(ok: bool, scheduler: str, field: str, expected: str, got: object) -> None:
    """Raise ``ValueError`` naming the scheduler parameter when ``ok`` is false."""
    if not ok:
        raise ValueError(f"scheduler {scheduler!r}: {field}: expected {expected}, got {got!r}")


# ------------------------------------------------------------------------ representations
def mean_chunk_bytes(rep: RepInfo) -> float:
    return sum(rep.chunk_bytes) / max(len(rep.chunk_bytes), 1)


def pixel_ladder(v: VideoView) -> tuple[RepInfo, ...]:
    """Pixel representations of ``v`` by bitrate ascending; if it has none, its cheapest
    representation alone (smallest mean chunk size)."""
    pixel = sorted(v.reps_of_kind("pixel"), key=lambda r: (r.bitrate_kbps, r.name))
    if pixel:
        return tuple(pixel)
    return (min(v.representations, key=lambda r: (mean_chunk_bytes(r), r.name)),)


def by_buffer(ladder: Sequence[RepInfo], buffer_s: float, low_s: float,
              high_s: float) -> RepInfo:
    """Buffer-based choice: the lowest rung while ``buffer_s <= low_s``, the top rung once
    ``buffer_s > high_s``, the rungs in between spread evenly over (low_s, high_s]. With
    three rungs and 1/2 s this is the short-video challenge's rule exactly."""
    n = len(ladder)
    if n == 1 or buffer_s <= low_s:
        return ladder[0]
    if buffer_s > high_s:
        return ladder[-1]
    if n == 2:
        return ladder[0]
    frac = (buffer_s - low_s) / (high_s - low_s)  # in (0, 1]
    return ladder[1 + min(int(frac * (n - 2)), n - 3)]


def by_throughput(ladder: Sequence[RepInfo], budget_bps: float) -> RepInfo:
    """Throughput-based choice: the highest rung whose nominal bitrate fits ``budget_bps``,
    the lowest when none does."""
    best = ladder[0]
    for r in ladder:
        if r.bitrate_kbps * 1000.0 <= budget_bps:
            best = r
    return best


# ------------------------------------------------------------------------ chunks & buffers
def start_s(obs: Observation, v: VideoView) -> float:
    """Content second from which ``v`` still has to play (the playhead for the current
    video, 0 for the others)."""
    return obs.playhead_s if v.position == obs.current else 0.0


def first_chunk(obs: Observation, v: VideoView) -> int:
    """First chunk of ``v`` not yet played."""
    if v.position != obs.current:
        return 0
    return min(int(obs.playhead_s // v.chunk_s), v.n_chunks)


def is_fetched(obs: Observation, v: VideoView, chunk: int) -> bool:
    """Downloaded (any representation) or in flight."""
    return chunk in v.downloaded or obs.is_in_flight(v.position, chunk)


def next_missing(obs: Observation, v: VideoView, limit: int | None = None) -> int | None:
    """First chunk of ``v`` from its play position on that is neither downloaded nor in
    flight, below ``limit`` (a chunk index; None: the whole video); None when none."""
    end = v.n_chunks if limit is None else min(limit, v.n_chunks)
    for c in range(first_chunk(obs, v), end):
        if not is_fetched(obs, v, c):
            return c
    return None


def _ahead_s(obs: Observation, v: VideoView, have) -> float:
    s = start_s(obs, v)
    c = first_chunk(obs, v)
    while c < v.n_chunks and have(c):
        c += 1
    return max(0.0, min(c * v.chunk_s, v.duration_s) - s)


def downloaded_ahead_s(obs: Observation, v: VideoView) -> float:
    """Contiguous downloaded content seconds from ``v``'s play position (the buffer the
    challenge's rules look at; decode is not required)."""
    return _ahead_s(obs, v, lambda c: c in v.downloaded)


def fetched_ahead_s(obs: Observation, v: VideoView) -> float:
    """Like ``downloaded_ahead_s`` but counting in-flight chunks too: what is already
    committed, so parallel connections do not overshoot a buffer cap."""
    return _ahead_s(obs, v, lambda c: is_fetched(obs, v, c))


def fetched_bytes(obs: Observation, v: VideoView) -> int:
    """Bytes of ``v`` downloaded (in the representation in use) or in flight (total size)."""
    total = sum(v.rep(name).chunk_bytes[c] for c, name in v.downloaded.items())
    total += sum(f.bytes_total for f in obs.in_flight
                 if f.position == v.position and f.chunk not in v.downloaded)
    return total


def later_videos(obs: Observation, count: int | None = None) -> tuple[VideoView, ...]:
    """The window's videos after the current one (at most ``count``)."""
    rest = obs.videos[1:]
    return rest if count is None else rest[:count]


# ------------------------------------------------------------------------ throughput
def harmonic_mean(values: Sequence[float]) -> float:
    return len(values) / sum(1.0 / max(x, 1e-9) for x in values)


class RobustThroughput:
    """RobustMPC's estimate: harmonic mean of the last ``n`` samples divided by
    ``1 + max relative error`` of the last ``n`` predictions.

    ``predict(fallback_bps)`` returns the estimate and remembers the plain harmonic mean as
    the prediction the next sample is judged against; ``add(sample_bps)`` records a sample.
    Before any sample the estimate is ``fallback_bps`` (the player's own estimate).
    """

    def __init__(self, n: int = 5) -> None:
        self.n = n
        self.samples: list[float] = []
        self.errors: list[float] = []
        self._last_prediction: float | None = None

    def add(self, sample_bps: float) -> None:
        if not (sample_bps > 0 and math.isfinite(sample_bps)):
            return
        if self._last_prediction is not None:
            self.errors.append(abs(self._last_prediction - sample_bps) / sample_bps)
            del self.errors[: -self.n]
        self.samples.append(sample_bps)
        del self.samples[: -self.n]

    def predict(self, fallback_bps: float) -> float:
        if not self.samples:
            return fallback_bps
        hm = harmonic_mean(self.samples)
        self._last_prediction = hm
        return hm / (1.0 + (max(self.errors) if self.errors else 0.0))


# ------------------------------------------------------------------------ swipe risk
def _grid(seconds: float) -> int:
    return round(seconds / GRID_S)


def watch_grid(v: VideoView, after_s: float = 0.0) -> dict[int, float]:
    """Distribution of the *remaining* watch time of ``v`` on the ``GRID_S`` grid, given the
    user has watched ``after_s`` content seconds: {grid index: probability}.

    A swipe during second j counts as leaving at j + 0.5 s; the last pmf entry (watched to
    the end) as leaving at the video's duration.
    """
    return dict(_watch_grid(v.watch_pmf, v.duration_s, after_s))


@functools.lru_cache(maxsize=512)
def _watch_grid(pmf: tuple[float, ...], duration_s: float,
                after_s: float) -> tuple[tuple[int, float], ...]:
    # Cached: a video ahead (after_s 0) gets the same grid at every decision.
    n = len(pmf) - 1
    points = [(j + 0.5, p) for j, p in enumerate(pmf[:n])]
    points.append((duration_s, pmf[n] if n >= 0 else 1.0))
    out: dict[int, float] = {}
    total = 0.0
    for w, p in points:
        if p > 0 and w > after_s:
            k = _grid(w - after_s)
            out[k] = out.get(k, 0.0) + p
            total += p
    if total <= 0:
        return ((_grid(max(duration_s - after_s, 0.0)), 1.0),)
    return tuple((k, p / total) for k, p in out.items())


def start_time_dists(obs: Observation, horizon_s: float) -> list[dict[int, float]]:
    """For each video of the window, the distribution of when (grid index from now) it
    comes on screen: the current video now; video i+1 when video i ends (its remaining
    watch time added, i.e. the watch pmfs convolved). Mass beyond ``horizon_s`` is dropped;
    stalls are ignored."""
    limit = _grid(horizon_s)
    dists: list[dict[int, float]] = [{0: 1.0}]
    for i, v in enumerate(obs.videos[:-1]):
        rem = _watch_grid(v.watch_pmf, v.duration_s, obs.playhead_s if i == 0 else 0.0)
        # Only the terms with a + b < limit count. watch_grid's keys normally ascend, so
        # they are a prefix of rem, found by bisection; the products and their order of
        # addition stay those of the plain double loop, so the floats (and dashlet's
        # decisions) are bit-identical to it (tests/test_sim.py).
        keys = [b for b, _ in rem]
        ascending = all(x < y for x, y in itertools.pairwise(keys))
        nxt: dict[int, float] = {}
        get = nxt.get
        for a, pa in dists[-1].items():
            part = rem[:bisect.bisect_left(keys, limit - a)] if ascending else \
                [(b, pb) for b, pb in rem if a + b < limit]
            for b, pb in part:
                nxt[a + b] = get(a + b, 0.0) + pa * pb
        dists.append(nxt)
    return dists


@functools.lru_cache(maxsize=1024)
def _chunk_reach(pmf: tuple[float, ...], chunk_s: float, n_chunks: int) -> tuple[float, ...]:
    """``prob_reaching`` at every chunk start; cached: the same values at every decision."""
    return tuple(prob_reaching(pmf, c * chunk_s) for c in range(n_chunks))


def chunk_risks(obs: Observation, horizon_s: float) -> dict[tuple[int, int], float]:
    """Dashlet's risk of every chunk not yet played in the window:
    ``sum over t < horizon_s of (horizon_s - t) * P(chunk needed at t)`` with t in seconds
    from now. A chunk is needed if its video comes on screen and the user is still watching
    when it starts: P = P(start = s) * P(watch > chunk start | watched so far)."""
    dists = start_time_dists(obs, horizon_s)
    risks: dict[tuple[int, int], float] = {}
    for i, v in enumerate(obs.videos):
        base = start_s(obs, v)
        reach0 = v.prob_reaching_s(base) if i == 0 else 1.0
        reach = _chunk_reach(v.watch_pmf, v.chunk_s, v.n_chunks)
        chunks, offsets, p_watch = [], [], []
        for c in range(first_chunk(obs, v), v.n_chunks):
            offset_s = max(c * v.chunk_s - base, 0.0)
            if offset_s >= horizon_s:
                break
            if c * v.chunk_s <= base:
                pw = 1.0
            else:
                pw = reach[c] / reach0 if reach0 > 0 else 0.0
            chunks.append(c)
            offsets.append(offset_s)
            p_watch.append(min(pw, 1.0))
        if not chunks:
            continue
        # risk = sum over the start-time grid, in dict order, of (horizon_s - t) * P(start)
        # * p_watch, t = start + offset < horizon_s. Start-major: every chunk still adds
        # its terms in that order (bit-identical floats to the chunk-major loop; tested in
        # tests/test_sim.py), and as offsets ascend, the chunks with t < horizon_s are a
        # prefix, so the loop stops at the first one too late.
        risk = [0.0] * len(chunks)
        for k, ps in dists[i].items():
            start = k * GRID_S
            for j, off in enumerate(offsets):
                t = start + off
                if not t < horizon_s:
                    break
                risk[j] += (horizon_s - t) * ps * p_watch[j]
        for c, r in zip(chunks, risk):
            risks[(v.position, c)] = r
    return risks
