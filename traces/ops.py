"""Operations on ``Trace`` values (each returns a new trace) and writers to the public
Mahimahi and cooked formats.

All operations keep the one timing convention of ``traces.trace`` and loop the trace where
they read past its end, as the link emulators do.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np

from traces.formats import CONVENTIONS, MAHIMAHI_PACKET_BITS
from traces.trace import Trace, TraceError


def _derived(trace: Trace, times_s, rates_mbps, last_step_s, what: str) -> Trace:
    return Trace(np.asarray(times_s, dtype=np.float64), np.asarray(rates_mbps, dtype=np.float64),
                 float(last_step_s), name=f"{trace.name}|{what}", source=trace.source,
                 meta={**trace.meta, "ops": [*trace.meta.get("ops", []), what]})


def window(trace: Trace, t0_s: float, duration_s: float) -> Trace:
    """The part of ``trace`` (looped as needed) from ``t0_s`` for ``duration_s`` seconds,
    re-based to start at 0. ``t0_s`` is relative to the trace start."""
    if not duration_s > 0:
        raise TraceError(f"{trace.name}: window duration must be > 0 s, got {duration_s}")
    start = trace.start_s
    t0 = start + t0_s
    first_loop = int(np.floor((t0 - start) / trace.duration_s))
    last_loop = int(np.floor((t0 + duration_s - start) / trace.duration_s))
    loops = np.arange(first_loop, last_loop + 1)
    starts = (trace.times_s[None, :] + loops[:, None] * trace.duration_s).ravel()
    rates = np.tile(trace.rates_mbps, len(loops))
    ends = np.append(starts[1:], starts[-1] + trace.last_step_s)
    t1 = t0 + duration_s
    keep = (ends > t0) & (starts < t1)
    s, e, r = starts[keep], ends[keep], rates[keep]
    s = np.maximum(s, t0)
    e = np.minimum(e, t1)
    nz = e > s
    s, e, r = s[nz], e[nz], r[nz]
    return _derived(trace, s - t0, r, e[-1] - s[-1], f"window({t0_s:g},{duration_s:g})")


def loop(trace: Trace, duration_s: float) -> Trace:
    """Repeat ``trace`` until it lasts ``duration_s`` (the last repetition is cut)."""
    return window(trace, 0.0, duration_s)


def offset(trace: Trace, start_s: float) -> Trace:
    """Rotate ``trace`` so that it begins ``start_s`` seconds into the original (looping);
    the duration is unchanged."""
    w = window(trace, start_s % trace.duration_s, trace.duration_s)
    return _derived(trace, *_parts(w), f"offset({start_s:g})")


def _parts(trace: Trace):
    return trace.times_s, trace.rates_mbps, trace.last_step_s


def scale(trace: Trace, factor: float) -> Trace:
    """Multiply every rate by ``factor`` (>= 0)."""
    if not factor >= 0:
        raise TraceError(f"{trace.name}: scale factor must be >= 0, got {factor}")
    return _derived(trace, trace.times_s - trace.start_s, trace.rates_mbps * factor,
                    trace.last_step_s, f"scale({factor:g})")


def clip(trace: Trace, min_mbps: float | None = None, max_mbps: float | None = None) -> Trace:
    """Limit every rate to [min_mbps, max_mbps] (either bound may be None)."""
    lo = 0.0 if min_mbps is None else float(min_mbps)
    hi = np.inf if max_mbps is None else float(max_mbps)
    if lo < 0 or hi < lo:
        raise TraceError(f"{trace.name}: clip needs 0 <= min_mbps <= max_mbps, "
                         f"got {min_mbps}, {max_mbps}")
    return _derived(trace, trace.times_s - trace.start_s, np.clip(trace.rates_mbps, lo, hi),
                    trace.last_step_s, f"clip({min_mbps},{max_mbps})")


def resample(trace: Trace, bin_s: float) -> Trace:
    """Average capacity over consecutive ``bin_s`` bins (exact: bits per bin / bin width).

    The last bin is shorter when the duration is not a multiple of ``bin_s``, so the total
    bits per loop are preserved exactly."""
    if not bin_s > 0:
        raise TraceError(f"{trace.name}: bin_s must be > 0, got {bin_s}")
    n = int(np.ceil(trace.duration_s / bin_s - 1e-9))
    edges = trace.start_s + np.minimum(np.arange(n + 1) * bin_s, trace.duration_s)
    cum = cumulative_bits(trace, edges)
    widths = np.diff(edges)
    rates = np.diff(cum) / widths / 1e6
    return _derived(trace, edges[:-1] - trace.start_s, rates, widths[-1],
                    f"resample({bin_s:g})")


def cumulative_bits(trace: Trace, t_s: np.ndarray) -> np.ndarray:
    """Bits deliverable from the trace start to each absolute time in ``t_s`` (within one
    loop, ``start_s <= t <= end_s``), vectorised."""
    t = np.asarray(t_s, dtype=np.float64)
    cum = np.concatenate([[0.0], np.cumsum((trace.ends_s - trace.times_s)
                                           * trace.rates_mbps * 1e6)])
    i = np.clip(np.searchsorted(trace.times_s, t, side="right") - 1, 0, len(trace.times_s) - 1)
    return cum[i] + (t - trace.times_s[i]) * trace.rates_mbps[i] * 1e6


def to_mahimahi_ms(trace: Trace) -> np.ndarray:
    """Delivery-opportunity timestamps (ms) that carry ``trace`` in Mahimahi's format.

    Packet *k* (1500 bytes) gets the millisecond ``m`` in whose interval ``(m, m+1]`` the
    trace has delivered *k* packets' worth of bits, so every packet's bits come from before
    its opportunity and per-bin packet counts survive a load/write round trip. The last line
    is the duration in ms (mm-link's loop period): one opportunity is added there, i.e. one
    extra packet per loop.
    """
    period_ms = round(trace.duration_s * 1000)
    if period_ms <= 0:
        raise TraceError(f"{trace.name}: shorter than 1 ms, cannot be written for Mahimahi")
    widths = trace.ends_s - trace.times_s
    cum = np.concatenate([[0.0], np.cumsum(widths * trace.rates_mbps * 1e6)])
    npk = int(np.floor(cum[-1] / MAHIMAHI_PACKET_BITS + 1e-9))
    if npk == 0:
        raise TraceError(f"{trace.name}: carries less than one 1500-byte packet per loop "
                         f"(Mahimahi needs at least one delivery opportunity)")
    need = np.arange(1, npk + 1) * float(MAHIMAHI_PACKET_BITS)
    i = np.clip(np.searchsorted(cum, need * (1 - 1e-12), side="left") - 1, 0,
                len(widths) - 1)
    t_s = (trace.times_s[i] - trace.start_s) + (need - cum[i]) / (trace.rates_mbps[i] * 1e6)
    ms = np.clip(np.ceil(t_s * 1000 - 1e-6) - 1, 0, period_ms - 1).astype(np.int64)
    return np.append(ms, period_ms)


def _write_atomic(path: Path, text: str) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_mahimahi(trace: Trace, path: str | Path) -> Path:
    """Write ``trace`` as a Mahimahi trace file (replaced atomically)."""
    ms = to_mahimahi_ms(trace)
    _write_atomic(Path(path), "\n".join(map(str, ms.tolist())) + "\n")
    return Path(path)


def write_cooked(trace: Trace, path: str | Path, convention: str = "end") -> Path:
    """Write ``time_s<TAB>Mbps`` lines readable by ``formats.load_cooked`` with the same
    ``convention``: ``"end"`` writes each sample's end time, ``"start"`` its start time."""
    if convention not in CONVENTIONS:
        raise TraceError(f"convention must be one of {CONVENTIONS}, got {convention!r}")
    t = (trace.ends_s if convention == "end" else trace.times_s) - trace.start_s
    lines = [f"{a:.6f}\t{b:.6f}" for a, b in zip(t.tolist(), trace.rates_mbps.tolist())]
    _write_atomic(Path(path), "\n".join(lines) + "\n")
    return Path(path)


def with_name(trace: Trace, name: str) -> Trace:
    """The same trace under another name."""
    return replace(trace, name=name)
