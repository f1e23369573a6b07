"""Trace replay for the tc backends: per-port change schedules and the one replay thread.

A schedule is the list of (offset s, trace Mbit/s, bin width s) for one loop of the trace;
the replay thread walks all ports' schedules in time order (looping past the end) and
writes each change to the port's long-running ``tc -force -batch -`` pipe, so one slow
change never delays another link's (a forked ``tc`` costs 2-5 ms, a batch line ~0.01 ms).
"""

from __future__ import annotations

import heapq
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from traces.ops import resample
from traces.trace import Trace

FINE_STEP_S = 0.1   # traces with steps finer than this are replayed in 0.1-s bins
MERGE_BLOCK_S = 1.0  # thin bins are merged only inside these blocks of the trace


@dataclass(frozen=True)
class Schedule:
    """One loop of a replay: ``offsets_s[i]`` (from the trace start) holds ``rates_mbps[i]``
    for ``widths_s[i]``; the loop lasts ``period_s``."""

    offsets_s: np.ndarray
    rates_mbps: np.ndarray
    widths_s: np.ndarray
    period_s: float
    bin_s: float | None

    def at(self, k: int) -> tuple[float, float, float]:
        """The k-th change counting across loops: (offset s, Mbit/s, width s)."""
        loop, i = divmod(k, len(self.offsets_s))
        return (loop * self.period_s + float(self.offsets_s[i]), float(self.rates_mbps[i]),
                float(self.widths_s[i]))

    def rate_at(self, t_s: float) -> float:
        off = t_s % self.period_s
        i = int(np.searchsorted(self.offsets_s, off, side="right")) - 1
        return float(self.rates_mbps[max(i, 0)])


def make_schedule(trace: Trace, bin_s: float | None = None,
                  min_bin_bytes: float = 0.0) -> Schedule:
    """Replay schedule of ``trace``: bins of ``bin_s`` if given, else the trace's own steps
    (or 0.1-s bins when some step is finer than that); then bins carrying fewer than
    ``min_bin_bytes`` (trace bytes) are merged with their neighbours inside the same
    ``MERGE_BLOCK_S`` block of the trace (see ``merge_thin_bins``); equal neighbours are
    merged last."""
    widths = trace.ends_s - trace.times_s
    used_bin = bin_s
    if bin_s is None and np.min(widths) < FINE_STEP_S - 1e-9:
        used_bin = FINE_STEP_S
    if used_bin is not None:
        trace = resample(trace, used_bin)
        widths = trace.ends_s - trace.times_s
    off = trace.times_s - trace.start_s
    rates = trace.rates_mbps
    # Zero-width samples (duplicate timestamps) carry no time.
    live = widths > 0
    off, rates, widths = off[live], rates[live], widths[live]
    if min_bin_bytes > 0:
        off, rates, widths = merge_thin_bins(off, rates, widths, min_bin_bytes)
    keep = np.ones(len(rates), dtype=bool)
    keep[1:] = (rates[1:] != rates[:-1]) | (widths[1:] != widths[:-1])
    idx = np.flatnonzero(keep)
    new_off = off[idx]
    ends = np.append(new_off[1:], trace.duration_s)
    # The width used for the zero-capacity floor is the (merged) bin, not the run of equal
    # bins after it.
    return Schedule(new_off, rates[idx], np.minimum(ends - new_off, widths[idx]),
                    float(trace.duration_s), used_bin)


def merge_thin_bins(off_s: np.ndarray, rates_mbps: np.ndarray, widths_s: np.ndarray,
                    min_bytes: float, block_s: float = MERGE_BLOCK_S):
    """Merge consecutive bins until each carries at least ``min_bytes`` (trace bytes),
    never across a ``block_s`` boundary of the trace (a block's last thin group joins the
    group before it). Bits per block are kept exactly; returns (offsets, rates, widths).

    Why: HTB sends a frame as soon as its tokens are >= 0 and then owes the frame's cost
    *in time* at the rate in force (1514 B at 0.12 Mbit/s = 0.1 s). A rate raised later
    does not shorten that debt, so after a thin bin (one frame per 0.1 s, or the one frame
    per second zero floor) the next, fast bins stay blocked for up to that long. With
    ``min_bytes`` of K frames a frame's debt is at most 1/K of its bin."""
    block = np.floor(off_s / block_s + 1e-9).astype(np.int64)
    block_end = np.searchsorted(block, block, side="right")   # first bin of the next block
    bits = rates_mbps * widths_s * 1e6
    tail_bits = np.concatenate([[0.0], np.cumsum(bits)])       # bits of bins [i, j)
    need = min_bytes * 8
    starts = []
    i, n = 0, len(off_s)
    while i < n:
        end = int(block_end[i])
        j = i + 1
        while j < end and tail_bits[j] - tail_bits[i] < need:
            j += 1
        if tail_bits[end] - tail_bits[j] < need:
            j = end          # the block's thin remainder joins this group
        starts.append(i)
        i = j
    s = np.array(starts, dtype=np.int64)
    w = np.add.reduceat(widths_s, s)
    return off_s[s], np.add.reduceat(bits, s) / w / 1e6, w


class LagStats:
    """Bounded statistics of replay lag (ms): exact count and max, median and p99 from a
    uniform reservoir of ``keep`` values (exact while there were at most ``keep`` changes;
    a run of hours at 10 changes/s would otherwise grow a list without bound)."""

    def __init__(self, keep: int = 8192, seed: int = 0):
        self.keep = keep
        self.count = 0
        self.max_ms = float("-inf")
        self._sample: list[float] = []
        self._rng = random.Random(seed)

    def add(self, lag_ms: float) -> None:
        self.count += 1
        self.max_ms = max(self.max_ms, lag_ms)
        if len(self._sample) < self.keep:
            self._sample.append(lag_ms)
        else:   # Algorithm R: every value so far stays in the sample with equal chance
            k = self._rng.randrange(self.count)
            if k < self.keep:
                self._sample[k] = lag_ms

    def summary(self) -> dict:
        if not self.count:
            return {"changes": 0}
        a = np.asarray(self._sample)
        return {"changes": self.count, "lag_ms_median": round(float(np.median(a)), 3),
                "lag_ms_p99": round(float(np.percentile(a, 99)), 3),
                "lag_ms_max": round(self.max_ms, 3)}


@dataclass
class Port:
    """One shaped egress followed by the replay thread.

    apply(i, t_offset_s, trace_mbps, width_s) -> list of lines for the batch pipe (``i``:
    the change's index within the schedule's loop).
    write(lines): hands them to the pipe (called from the replay thread only)."""

    name: str
    schedule: Schedule
    apply: Callable[[int, float, float, float], list[str]]
    write: Callable[[list[str]], None]
    changes: int = 0
    lag: LagStats = field(default_factory=LagStats)


class ReplayThread(threading.Thread):
    """Walks every port's schedule from ``t0`` (time.monotonic) until stopped."""

    def __init__(self, ports: list[Port], t0: float):
        super().__init__(name="promptbed-replay", daemon=True)
        self.ports = ports
        self.t0 = t0
        self._halt = threading.Event()
        self.error: BaseException | None = None

    def stop(self, timeout_s: float = 5.0) -> None:
        self._halt.set()
        if self.is_alive():
            self.join(timeout_s)

    def run(self) -> None:
        try:
            heap = [(p.schedule.at(0)[0], 0, j) for j, p in enumerate(self.ports)]
            heapq.heapify(heap)
            while heap and not self._halt.is_set():
                due_s, k, j = heap[0]
                wait = self.t0 + due_s - time.monotonic()
                if wait > 0 and self._halt.wait(wait):
                    break
                # Everything due now, grouped per port, one write per port.
                now_off = time.monotonic() - self.t0
                batch: dict[int, list[str]] = {}
                while heap and heap[0][0] <= now_off + 1e-4:
                    due_s, k, j = heapq.heappop(heap)
                    p = self.ports[j]
                    off, mbps, width = p.schedule.at(k)
                    i = k % len(p.schedule.offsets_s)
                    batch.setdefault(j, []).extend(p.apply(i, off, mbps, width))
                    p.changes += 1
                    p.lag.add((now_off - due_s) * 1000)
                    heapq.heappush(heap, (p.schedule.at(k + 1)[0], k + 1, j))
                for j, lines in batch.items():
                    if lines:
                        self.ports[j].write(lines)
        except BaseException as exc:  # reported via applied_link_params and teardown
            self.error = exc
