"""The cost model shared by ``greedy-compute`` and ``promptpream``: when would a chunk be
playable if fetched now in representation *r* and decoded on device *d*, when is it
needed, how likely is it to be played, and what is that worth in QoE terms.

Private (leading underscore): not a scheduler. Everything is a pure function of the
``Observation`` and the parameters, in seconds relative to the observation's time.

Model (documented in docs/promptpream.md):
- Link: the observation's throughput estimate times ``tput_safety``, shared equally by the
  downloads in flight (processor sharing, as the simulator's link): a new download of b
  bits finishes after ``(b + sum_j min(r_j, b)) / rate`` where r_j are the bits left of the
  downloads in flight (exact for a constant link).
- Decode: a device is free after its running decode (``busy_until_s``) plus the queued
  chunks that play before this one (its queue runs in playout order); then the chunk takes
  the representation's ``decode_s`` on that device.
- Swipes: the start time of each video of the window is the sum of the remaining watch
  times of the videos before it (their pmfs convolved on a 0.5-s grid, stalls ignored);
  chunk c of a video is needed at start + c * chunk_s (minus the playhead for the current
  video) if the user is still watching then.
- Worth of having a chunk at all (``Candidate.worth``): ``P(played) * q - waste_weight *
  (1 - P(played)) * Mbit - download_weight * Mbit``; a chunk none of whose candidates is
  worth > 0 is not fetched. Value of this representation/device (``Candidate.value``):
  worth - lam * P(played) * |q - q_prev| - drain - mu * E[stall], E[stall] = E[max(0,
  ready - need)] over the need-time distribution, drain = mu * P(played) * max(0, own
  transfer time - chunk_s) (link time beyond the chunk's duration is buffer the chunks
  after it lose). It picks the representation and device of a chunk.
- Which chunk (``Candidate.score``): value + mu * E[stall] (a stall that happens whatever is
  chosen does not make a chunk less urgent) + the urgency ``mu * (E[stall | ready +
  defer_s] - E[stall])``: what deferring it by one more download would cost.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass

import numpy as np

from players.schedulers.base import Observation, RepInfo

GRID_S = 0.5


@dataclass(frozen=True)
class CostParams:
    """horizon_s: retention horizon (s): chunks first needed this far ahead or later are not
    fetched. min_p_played: chunks less likely to be played are not fetched. mu / lam: QoE
    weights (per stall s, per Mbps switch). waste_weight: cost per wasted Mbit (expected).
    download_weight: cost per downloaded Mbit. tput_safety: multiplies the throughput
    estimate. defer_s: how long a chunk not chosen now waits (urgency term).
    prompt_quality_mbps: None (default): a prompt chunk is worth its representation's
    quality-equivalent bitrate (the manifest's); a number: the scheduler values every
    prompt chunk at this many Mbps-eq. instead. A what-if for a codec whose measured
    quality is unusable (the local model's is 0): the QoE accounting still charges the
    manifest's quality."""

    # horizon_s and waste_weight were chosen on held-out traces (files 5-6 of each
    # headline dataset; the headline uses files 0-4): docs/promptpream.md.
    horizon_s: float = 10.0
    min_p_played: float = 0.05
    mu: float = 1.85
    lam: float = 1.0
    waste_weight: float = 1.0
    download_weight: float = 0.0
    tput_safety: float = 0.9
    defer_s: float = 1.0
    prompt_quality_mbps: float | None = None

    def check(self, scheduler: str) -> None:
        for name in ("horizon_s", "tput_safety"):
            if not getattr(self, name) > 0:
                raise ValueError(f"scheduler {scheduler!r}: {name}: expected > 0, "
                                 f"got {getattr(self, name)!r}")
        for name in ("min_p_played", "mu", "lam", "waste_weight", "download_weight", "defer_s"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"scheduler {scheduler!r}: {name}: expected >= 0, "
                                 f"got {getattr(self, name)!r}")
        q = self.prompt_quality_mbps
        if q is not None and (isinstance(q, bool) or not isinstance(q, (int, float))
                              or not q >= 0):
            raise ValueError(f"scheduler {scheduler!r}: prompt_quality_mbps: expected a "
                             f"number >= 0 (or unset), got {q!r}")


@dataclass(frozen=True)
class Candidate:
    """One download the cost model considers: chunk ``chunk`` of window video ``index``
    (feed ``position``) in ``rep`` decoded on ``device``. Times in s from now; quality in
    Mbps-eq. as the scheduler values it (``Context.quality``)."""

    index: int
    position: int
    chunk: int
    rep: RepInfo
    device: str
    ready_s: float
    p_played: float
    deadline_s: float
    worth: float
    value: float
    score: float
    quality: float

    @property
    def mbit(self) -> float:
        return self.rep.chunk_bytes[self.chunk] * 8e-6


class Context:
    """The cost model's view of one observation (built once per decision)."""

    def __init__(self, obs: Observation, p: CostParams) -> None:
        self.obs = obs
        self.p = p
        self.rate_bps = max(obs.throughput_bps * p.tput_safety, 1e3)
        self.inflight_bits = [max(f.bytes_total - f.bytes_done, 0) * 8.0 for f in obs.in_flight]
        self.k = int(p.horizon_s / GRID_S) + 1
        self.grid = np.arange(self.k) * GRID_S
        self.videos = obs.videos
        self.base = [obs.playhead_s if v.position == obs.current else 0.0 for v in obs.videos]
        self.first = [min(int((b + 1e-9) // v.chunk_s), v.n_chunks)
                      for b, v in zip(self.base, obs.videos)]
        self.reach0 = [v.prob_reaching_s(b) if b > 0 else 1.0
                       for b, v in zip(self.base, obs.videos)]
        self.start = self._start_dists()
        self._dev = {d.name: d for d in obs.devices}
        self._need: dict[tuple[int, int], tuple] = {}
        self._stall_tab: dict[tuple[int, int], tuple] = {}
        self._flying = {(f.position, f.chunk) for f in obs.in_flight}

    # ---------------------------------------------------------------- swipes
    def remaining_watch(self, i: int) -> np.ndarray:
        """Distribution of the remaining watch time of window video ``i`` on the grid
        (mass beyond the horizon dropped; conditioned on what was watched)."""
        v, base = self.videos[i], self.base[i]
        out = np.zeros(self.k)
        n = len(v.watch_pmf) - 1
        total = 0.0
        for j, pj in enumerate(v.watch_pmf):
            if pj <= 0:
                continue
            leave = v.duration_s if j == n else min(j + 0.5, v.duration_s)
            rem = leave - base
            if rem <= 0:
                continue
            total += pj
            b = round(rem / GRID_S)
            if b < self.k:
                out[b] += pj
        if total <= 0:
            b = round(max(v.duration_s - base, 0.0) / GRID_S)
            if b < self.k:
                out[b] = 1.0
            return out
        return out / total

    def _start_dists(self) -> list[np.ndarray]:
        d = np.zeros(self.k)
        d[0] = 1.0
        out = [d]
        for i in range(len(self.videos) - 1):
            d = np.convolve(d, self.remaining_watch(i))[: self.k]
            out.append(d)
        return out

    def p_watch(self, i: int, chunk: int) -> float:
        """P(the user is still watching when chunk ``chunk`` of video ``i`` starts)."""
        v = self.videos[i]
        start = chunk * v.chunk_s
        if start <= self.base[i] + 1e-9:
            return 1.0
        r0 = self.reach0[i]
        return min(1.0, v.prob_reaching_s(start) / r0) if r0 > 0 else 0.0

    def need(self, i: int, chunk: int) -> tuple[np.ndarray, np.ndarray, float, float, float]:
        """(need times s, probabilities, P(played within horizon), earliest need s,
        expected need s | played) of chunk ``chunk`` of window video ``i``."""
        key = (i, chunk)
        hit = self._need.get(key)
        if hit is not None:
            return hit
        v = self.videos[i]
        off = max(chunk * v.chunk_s - self.base[i], 0.0)
        t = self.grid + off
        mask = (t < self.p.horizon_s) & (self.start[i] > 1e-12)
        t = t[mask]
        pr = self.start[i][mask] * self.p_watch(i, chunk)
        p = float(pr.sum())
        earliest = float(t[0]) if len(t) else math.inf
        mean = float((t * pr).sum() / p) if p > 0 else math.inf
        hit = (t, pr, p, earliest, mean)
        self._need[key] = hit
        return hit

    def expected_stall(self, i: int, chunk: int, ready_s: float) -> float:
        """E[max(0, ready_s - need)] (need times within the horizon only)."""
        tab = self._stall_tab.get((i, chunk))
        if tab is None:
            t, pr, _, _, _ = self.need(i, chunk)
            times = t.tolist()
            cum_p = np.cumsum(pr).tolist()
            cum_pt = np.cumsum(pr * t).tolist()
            tab = (times, cum_p, cum_pt)
            self._stall_tab[(i, chunk)] = tab
        times, cum_p, cum_pt = tab
        k = bisect.bisect_left(times, ready_s)  # need times strictly before ready_s
        if k == 0:
            return 0.0
        return max(ready_s * cum_p[k - 1] - cum_pt[k - 1], 0.0)

    # ---------------------------------------------------------------- timing
    def download_s(self, bytes_: int) -> float:
        """Finish time of a download of ``bytes_`` started now (processor sharing)."""
        b = bytes_ * 8.0
        return (b + sum(min(r, b) for r in self.inflight_bits)) / self.rate_bps

    def backlog_s(self) -> float:
        return sum(self.inflight_bits) / self.rate_bps

    def device_free_s(self, device: str, position: int, chunk: int) -> float:
        """When ``device`` could start decoding chunk (position, chunk) if it arrived now."""
        d = self._dev.get(device)
        if d is None:
            return 0.0
        busy = max(d.busy_until_s - self.obs.t_s, 0.0)
        queued = d.queued[1:] if busy > 0 else d.queued
        for p, c in queued:
            if (p, c) < (position, chunk):
                busy += self.queued_decode_s(device, p, c)
        return busy

    def device_backlog_s(self, device: str) -> float:
        """When ``device`` has decoded everything it holds now (s from now)."""
        d = self._dev.get(device)
        if d is None:
            return 0.0
        busy = max(d.busy_until_s - self.obs.t_s, 0.0)
        queued = d.queued[1:] if busy > 0 else d.queued
        return busy + sum(self.queued_decode_s(device, p, c) for p, c in queued)

    def queued_decode_s(self, device: str, position: int, chunk: int) -> float:
        try:
            v = self.obs.video(position)
        except KeyError:
            return 0.0  # a video already left: skipped by the device
        name = v.downloaded.get(chunk)
        if name is None:
            return 0.0
        return v.rep(name).decode_s.get(device, 0.0)

    def devices_for(self, rep: RepInfo) -> list[str]:
        """Devices of the observation that can decode ``rep`` (the obs order)."""
        names = [d.name for d in self.obs.devices if d.name in rep.decode_s]
        if names:
            return names
        # no profile for any present device: the player decodes on its default device
        return [self.obs.devices[0].name] if self.obs.devices else ["cpu"]

    def ready_s(self, position: int, chunk: int, rep: RepInfo, device: str,
                dl_s: float | None = None) -> float:
        dl = self.download_s(rep.chunk_bytes[chunk]) if dl_s is None else dl_s
        start = max(dl, self.device_free_s(device, position, chunk))
        return start + rep.decode_s.get(device, 0.0)

    # ---------------------------------------------------------------- candidates
    def quality(self, rep: RepInfo, chunk: int) -> float:
        """Quality (Mbps-eq.) of ``chunk`` in ``rep`` as the scheduler values it: the
        representation's own, or ``prompt_quality_mbps`` for prompts when it is set."""
        if rep.kind == "prompt" and self.p.prompt_quality_mbps is not None:
            return float(self.p.prompt_quality_mbps)
        return rep.chunk_quality_mbps[chunk]

    def missing_chunks(self, i: int, skip: frozenset = frozenset(),
                       limit: int | None = None) -> list[int]:
        """Chunks of window video ``i`` from its play position on that are neither
        downloaded, in flight nor in ``skip`` ((index, chunk) pairs); at most ``limit``."""
        v = self.videos[i]
        out = []
        for c in range(self.first[i], v.n_chunks):
            if c in v.downloaded or (v.position, c) in self._flying or (i, c) in skip:
                continue
            out.append(c)
            if limit is not None and len(out) >= limit:
                break
        return out

    def prev_quality(self, i: int, chunk: int) -> float | None:
        v = self.videos[i]
        name = v.downloaded.get(chunk - 1)
        if name is None:
            for f in self.obs.in_flight:
                if f.position == v.position and f.chunk == chunk - 1:
                    name = f.representation
        return None if name is None else self.quality(v.rep(name), chunk - 1)

    def candidate(self, i: int, chunk: int, rep: RepInfo, device: str,
                  ready_s: float | None = None) -> Candidate:
        v = self.videos[i]
        p = self.p
        ready = self.ready_s(v.position, chunk, rep, device) if ready_s is None else ready_s
        _, _, p_played, _, mean = self.need(i, chunk)
        q = self.quality(rep, chunk)
        mbit = rep.chunk_bytes[chunk] * 8e-6
        stall = self.expected_stall(i, chunk, ready)
        qp = self.prev_quality(i, chunk)
        switch = abs(q - qp) if qp is not None else 0.0
        worth = (p_played * q - p.waste_weight * (1.0 - p_played) * mbit
                 - p.download_weight * mbit)
        # Link time beyond the chunk's own duration drains the buffer of everything after.
        drain = p.mu * p_played * max(0.0, mbit * 1e6 / self.rate_bps - v.chunk_s)
        base = worth - p.lam * p_played * switch - drain
        urgency = p.mu * (self.expected_stall(i, chunk, ready + p.defer_s) - stall)
        return Candidate(i, v.position, chunk, rep, device, ready, p_played, mean, worth,
                         base - p.mu * stall, base + urgency, q)

    def candidates(self, per_video: int = 1) -> list[Candidate]:
        """Every (chunk, representation, device) for the first ``per_video`` missing chunks of
        each window video, before pruning, in a stable order."""
        out = []
        for i, v in enumerate(self.videos):
            for c in self.missing_chunks(i, limit=per_video):
                for rep in v.representations:
                    for dev in self.devices_for(rep):
                        out.append(self.candidate(i, c, rep, dev))
        return out


# ------------------------------------------------------------------------ pruning
def prune(ctx: Context, cands: list[Candidate]) -> list[Candidate]:
    """Cut dominated candidates; never returns an empty list for a non-empty input.

    Rules, in order (docs/promptpream.md):
    1. retention horizon: drop chunks first needed at or beyond ``horizon_s`` or played
       with probability below ``min_p_played``;
    2. device dominance: per (chunk, representation) keep the device that makes it
       playable first;
    3. deadline: drop a representation that cannot be playable by the chunk's expected
       need time when another representation of the chunk can (if none can, the rule
       does not apply);
    4. codec dominance: drop a pixel representation when a prompt representation of equal
       or better quality is playable by the deadline.
    If the rules leave nothing, the single best candidate by score is kept.
    """
    if not cands:
        return []
    p = ctx.p
    keep = []
    for c in cands:
        _, _, p_played, earliest, _ = ctx.need(c.index, c.chunk)
        if earliest < p.horizon_s and p_played >= p.min_p_played:
            keep.append(c)
    best_dev: dict[tuple, Candidate] = {}
    for c in keep:
        k = (c.index, c.chunk, c.rep.name)
        if k not in best_dev or c.ready_s < best_dev[k].ready_s:
            best_dev[k] = c
    by_chunk: dict[tuple, list[Candidate]] = {}
    for c in best_dev.values():
        by_chunk.setdefault((c.index, c.chunk), []).append(c)
    out = []
    for group in by_chunk.values():
        deadline = group[0].deadline_s
        on_time = [c for c in group if c.ready_s <= deadline]
        if not on_time:
            on_time = group  # all late: the stall cost decides, not a rule
        prompts = [c for c in on_time if c.rep.kind == "prompt"]
        for c in on_time:
            if c.rep.kind == "pixel" and any(q.quality >= c.quality for q in prompts):
                continue
            out.append(c)
    if not out:
        out = [max(cands, key=lambda c: c.score)]
    order = {id(c): n for n, c in enumerate(cands)}
    return sorted(out, key=lambda c: order[id(c)])
