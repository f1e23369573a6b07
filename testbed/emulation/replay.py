"""Trace replay for the tc backends: per-port change schedules and the one replay thread.

A schedule is the list of (offset s, trace Mbit/s, bin width s) for one loop of the trace;
the replay thread walks all ports' schedules in time order (looping past the end) and
writes each change to the port's long-running ``tc -force -batch -`` pipe, so one slow
change never delays another link's (a forked ``tc`` costs 2-5 ms, a batch line ~0.01 ms).
"""

from __future__ import annotations

import heapq
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from traces.ops import resample
from traces.trace import Trace

FINE_STEP_S = 0.1   # traces with steps finer than this are replayed in 0.1-s bins


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


def make_schedule(trace: Trace, bin_s: float | None = None) -> Schedule:
    """Replay schedule of ``trace``: bins of ``bin_s`` if given, else the trace's own steps
    (or 0.1-s bins when some step is finer than that); equal neighbours are merged."""
    widths = trace.ends_s - trace.times_s
    used_bin = bin_s
    if bin_s is None and np.min(widths) < FINE_STEP_S - 1e-9:
        used_bin = FINE_STEP_S
    if used_bin is not None:
        trace = resample(trace, used_bin)
        widths = trace.ends_s - trace.times_s
    off = trace.times_s - trace.start_s
    rates = trace.rates_mbps
    keep = np.ones(len(rates), dtype=bool)
    keep[1:] = (rates[1:] != rates[:-1]) | (widths[1:] != widths[:-1])
    # Zero-width samples (duplicate timestamps) carry no time.
    keep &= widths > 0
    idx = np.flatnonzero(keep)
    new_off = off[idx]
    ends = np.append(new_off[1:], trace.duration_s)
    # The width used for the zero-capacity floor is the original bin, not the merged run.
    return Schedule(new_off, rates[idx], np.minimum(ends - new_off, widths[idx])
                    if used_bin is None else np.full(len(idx), used_bin),
                    float(trace.duration_s), used_bin)


@dataclass
class Port:
    """One shaped egress followed by the replay thread.

    apply(t_offset_s, trace_mbps, width_s) -> list of lines for the batch pipe.
    write(lines): hands them to the pipe (called from the replay thread only)."""

    name: str
    schedule: Schedule
    apply: Callable[[float, float, float], list[str]]
    write: Callable[[list[str]], None]
    changes: int = 0
    lag_ms: list[float] = field(default_factory=list)


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
                    batch.setdefault(j, []).extend(p.apply(off, mbps, width))
                    p.changes += 1
                    p.lag_ms.append((now_off - due_s) * 1000)
                    heapq.heappush(heap, (p.schedule.at(k + 1)[0], k + 1, j))
                for j, lines in batch.items():
                    if lines:
                        self.ports[j].write(lines)
        except BaseException as exc:  # reported via applied_link_params and teardown
            self.error = exc


def lag_summary(lags_ms: list[float]) -> dict:
    if not lags_ms:
        return {"changes": 0}
    a = np.asarray(lags_ms)
    return {"changes": int(len(a)), "lag_ms_median": round(float(np.median(a)), 3),
            "lag_ms_p99": round(float(np.percentile(a, 99)), 3),
            "lag_ms_max": round(float(np.max(a)), 3)}
