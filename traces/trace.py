"""The one in-memory bandwidth-trace type: piecewise-constant link capacity over time.

Convention (one, everywhere): sample ``i`` gives the capacity from ``times_s[i]`` until
``times_s[i+1]``; the last sample holds for ``last_step_s`` seconds, so the trace lasts
``times_s[-1] + last_step_s - times_s[0]`` seconds. Loaders of formats with another timing
convention convert into this one at load time.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


class TraceError(ValueError):
    """A trace that cannot be used; the message names the file (and line) and what was expected."""


@dataclass(frozen=True)
class Trace:
    """Capacity over time.

    times_s: start time of each sample (s), non-decreasing, first usually 0.
    rates_mbps: capacity during each sample (Mbit/s, 1e6 bit/s), >= 0.
    last_step_s: how long the last sample holds (s).
    name: a human-readable name (file stem or generator description).
    source: where it came from (path or generator parameters), for run metadata.
    """

    times_s: np.ndarray
    rates_mbps: np.ndarray
    last_step_s: float
    name: str = "trace"
    source: str = ""
    meta: dict = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        t = np.asarray(self.times_s, dtype=np.float64)
        r = np.asarray(self.rates_mbps, dtype=np.float64)
        object.__setattr__(self, "times_s", t)
        object.__setattr__(self, "rates_mbps", r)
        where = self.source or self.name
        if t.ndim != 1 or r.ndim != 1 or len(t) != len(r):
            raise TraceError(f"{where}: times_s and rates_mbps must be 1-D of equal length")
        if len(t) == 0:
            raise TraceError(f"{where}: trace has no samples")
        if not (np.all(np.isfinite(t)) and np.all(np.isfinite(r))):
            raise TraceError(f"{where}: non-finite time or rate")
        if np.any(np.diff(t) < 0):
            i = int(np.argmax(np.diff(t) < 0)) + 1
            raise TraceError(f"{where}: sample {i}: time goes backwards ({t[i]} < {t[i - 1]})")
        if np.any(r < 0):
            i = int(np.argmax(r < 0))
            raise TraceError(f"{where}: sample {i}: negative rate {r[i]} Mbps (expected >= 0)")
        if not self.last_step_s > 0:
            raise TraceError(f"{where}: last_step_s must be > 0, got {self.last_step_s}")
        if self.duration_s <= 0:
            raise TraceError(f"{where}: zero-length trace")

    # -- basic facts -------------------------------------------------------------------
    @property
    def start_s(self) -> float:
        return float(self.times_s[0])

    @property
    def end_s(self) -> float:
        return float(self.times_s[-1] + self.last_step_s)

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s

    @property
    def ends_s(self) -> np.ndarray:
        """End time of each sample (s)."""
        return np.append(self.times_s[1:], self.end_s)

    def mean_mbps(self) -> float:
        """Time-weighted mean capacity (Mbit/s)."""
        w = self.ends_s - self.times_s
        return float(np.sum(w * self.rates_mbps) / np.sum(w))

    def rate_at(self, t_s: float) -> float:
        """Capacity (Mbit/s) at time ``t_s``; the trace loops past its end."""
        t = self.start_s + (t_s - self.start_s) % self.duration_s
        i = int(np.searchsorted(self.times_s, t, side="right")) - 1
        return float(self.rates_mbps[max(i, 0)])

    def bits_between(self, t0_s: float, t1_s: float) -> float:
        """Bits the link can carry in [t0_s, t1_s) (looping), exactly."""
        if t1_s <= t0_s:
            return 0.0
        return self._cumbits(t1_s) - self._cumbits(t0_s)

    def time_to_send(self, t0_s: float, bits: float) -> float:
        """Earliest t >= t0_s such that ``bits_between(t0_s, t) >= bits`` (inf if never)."""
        if bits <= 0:
            return t0_s
        per_loop = self._loop_bits()
        if per_loop <= 0:
            return float("inf")
        target = self._cumbits(t0_s) + bits
        loops, rem = divmod(target, per_loop)
        if rem == 0 and loops > 0:
            loops, rem = loops - 1, per_loop
        cum = self._cum_table()
        i = int(np.searchsorted(cum, rem, side="left")) - 1
        i = min(max(i, 0), len(self.rates_mbps) - 1)
        # Skip zero-rate samples that end exactly at the target.
        while self.rates_mbps[i] <= 0 and i + 1 < len(self.rates_mbps):
            i += 1
        t_in = self.times_s[i] + (rem - cum[i]) / (self.rates_mbps[i] * 1e6)
        return float(loops * self.duration_s + t_in)

    # -- internals ---------------------------------------------------------------------
    def _cum_table(self) -> np.ndarray:
        # Cached: the simulator asks for it at every event (the arrays never change).
        cum = self.__dict__.get("_cum")
        if cum is None:
            w = self.ends_s - self.times_s
            cum = np.concatenate([[0.0], np.cumsum(w * self.rates_mbps * 1e6)])
            object.__setattr__(self, "_cum", cum)
        return cum

    def _loop_bits(self) -> float:
        return float(self._cum_table()[-1])

    def _cumbits(self, t_s: float) -> float:
        """Bits deliverable from the trace start up to absolute time ``t_s`` (looping)."""
        loops, off = divmod(t_s - self.start_s, self.duration_s)
        t = self.start_s + off
        cum = self._cum_table()
        i = int(np.searchsorted(self.times_s, t, side="right")) - 1
        i = max(i, 0)
        part = cum[i] + (t - self.times_s[i]) * self.rates_mbps[i] * 1e6
        return float(loops * cum[-1] + part)
