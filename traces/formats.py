"""Loaders for the public bandwidth-trace formats, each converting into one ``Trace``.

Formats (``FORMATS``; ``load(path, fmt=None)`` auto-detects when ``fmt`` is None):

- ``mahimahi``: one integer per line, a millisecond timestamp per 1500-byte delivery
  opportunity (``.up``/``.down``); binned into ``bin_s`` bins (default 0.1 s).
- ``cooked``: ``time_s<ws>Mbps`` (Pensieve-style FCC, HSDPA, Oboe, Puffer); aliases ``fcc``,
  ``hsdpa``, ``oboe``, ``puffer``.
- ``challenge``: the ACM MM'22 short-video challenge network traces (``time_s Mbps``, 0.5 s).
- ``iperf3``: ``timestamp_s<ws>Mbps`` from ``iperf3 -i 1`` (the Solis WiFi logs), or an
  ``iperf3 --json`` report.
- ``gnettrack``: G-NetTrack CSV (ucc-5g): ``Timestamp`` + ``DL_bitrate``/``UL_bitrate`` in kbps.
- ``lumos``: Lumos per-chunk CSV (``app_throughput`` kbps, ``delivery_time`` s).

Timing of ``time rate`` files (``convention``):

- ``"end"`` (default for cooked, fcc, hsdpa, oboe, puffer, challenge): the value on line *i*
  is the throughput measured over the interval that *ends* at line *i*'s time, i.e. it holds
  from line *i-1*'s time to line *i*'s. This is how the Pensieve-family simulators and the
  short-video challenge's own simulator read these files, so emulated runs match results
  computed with those simulators. The first line has no predecessor: it gets the width of
  the second interval.
- ``"start"`` (default for iperf3, whose timestamps are interval starts): line *i*'s value
  holds from its own time until line *i+1*'s; the last line holds for the median step.
  This is what the short-video challenge README describes.

Every loaded trace starts at time 0 (the file's first instant is recorded in
``meta["t0_file_s"]``). Every malformed input raises ``TraceError`` with ``file:line`` and
what was expected.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import numpy as np

from traces.trace import Trace, TraceError

MAHIMAHI_PACKET_BITS = 1500 * 8
CONVENTIONS = ("start", "end")


# -- reading helpers ---------------------------------------------------------------------
def _read_text(path: Path) -> str:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise TraceError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise TraceError(f"{path}: not a text file (byte {exc.start} is not UTF-8)") from None
    if not text.strip():
        raise TraceError(f"{path}: empty file (expected at least one sample)")
    return text


def _numeric_rows(path: Path, text: str, ncols: int, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Parse whitespace-separated numeric rows; return (values[n, ncols], line numbers).

    A trailing newline is fine; blank lines inside the file, lines with another number of
    fields and non-numeric fields are errors naming ``file:line`` and ``what`` was expected.
    """
    lines = text.split("\n")
    if lines and lines[-1].strip() == "":
        lines.pop()
    rows: list[list[str]] = []
    linenos: list[int] = []
    for i, raw in enumerate(lines, start=1):
        fields = raw.split()
        if not fields:
            raise TraceError(f"{path}:{i}: empty line (expected {what})")
        if fields[0].startswith("#"):
            continue
        if len(fields) != ncols:
            raise TraceError(f"{path}:{i}: {len(fields)} fields {raw.strip()[:60]!r} "
                             f"(expected {what})")
        rows.append(fields)
        linenos.append(i)
    if not rows:
        raise TraceError(f"{path}: no samples (expected lines of {what})")
    try:
        values = np.array(rows, dtype=np.float64)
    except ValueError:
        for fields, i in zip(rows, linenos):
            for f in fields:
                try:
                    float(f)
                except ValueError:
                    raise TraceError(f"{path}:{i}: non-numeric field {f!r} "
                                     f"(expected {what})") from None
        raise
    bad = ~np.isfinite(values)
    if bad.any():
        r = int(np.argmax(bad.any(axis=1)))
        raise TraceError(f"{path}:{linenos[r]}: non-finite value (expected {what})")
    return values, np.array(linenos)


def _check_times(path: Path, times: np.ndarray, linenos: np.ndarray) -> None:
    d = np.diff(times)
    if np.any(d < 0):
        k = int(np.argmax(d < 0)) + 1
        raise TraceError(f"{path}:{linenos[k]}: time goes backwards ({times[k]:g} after "
                         f"{times[k - 1]:g}; expected non-decreasing times)")


def _check_rates(path: Path, rates: np.ndarray, linenos: np.ndarray, unit: str) -> None:
    if np.any(rates < 0):
        k = int(np.argmax(rates < 0))
        raise TraceError(f"{path}:{linenos[k]}: negative rate {rates[k]:g} {unit} "
                         f"(expected >= 0)")


def _trace_from_time_rate(path: Path, times: np.ndarray, rates_mbps: np.ndarray,
                          linenos: np.ndarray, convention: str, fmt: str,
                          last_step_s: float | None = None) -> Trace:
    """Build a Trace from ``time rate`` samples under ``convention`` (see module docstring)."""
    if convention not in CONVENTIONS:
        raise TraceError(f"{path}: unknown timing convention {convention!r} "
                         f"(expected one of {', '.join(CONVENTIONS)})")
    _check_times(path, times, linenos)
    _check_rates(path, rates_mbps, linenos, "Mbps")
    steps = np.diff(times)
    positive = steps[steps > 0]
    if len(positive) == 0 and last_step_s is None:
        raise TraceError(f"{path}: zero-length trace: all {len(times)} samples at time "
                         f"{times[0]:g} (expected at least two distinct times)")
    if convention == "start":
        if last_step_s is None:
            last_step_s = float(np.median(positive))
        starts = times
    else:
        # Sample i covers (t[i-1], t[i]]; the first gets the width of the first real step.
        first_w = float(positive[0]) if len(positive) else float(last_step_s)
        edges = np.concatenate([[times[0] - first_w], times])
        widths = np.diff(edges)
        keep = int(np.nonzero(widths > 0)[0][-1]) + 1  # trailing repeats cover nothing
        starts, rates_mbps = edges[:keep], rates_mbps[:keep]
        last_step_s = float(widths[keep - 1])
    t0 = float(starts[0])
    return Trace(starts - t0, rates_mbps, float(last_step_s), name=Path(path).name,
                 source=str(path), meta={"format": fmt, "convention": convention,
                                         "t0_file_s": t0})


# -- loaders -----------------------------------------------------------------------------
def load_mahimahi_ms(path: Path) -> np.ndarray:
    """Delivery-opportunity timestamps (ms, int64) of a Mahimahi trace, validated."""
    text = _read_text(path)
    values, linenos = _numeric_rows(path, text, 1, "one integer millisecond timestamp")
    ms = values[:, 0]
    frac = ms != np.floor(ms)
    if frac.any():
        k = int(np.argmax(frac))
        raise TraceError(f"{path}:{linenos[k]}: {ms[k]:g} is not an integer "
                         f"(expected a millisecond timestamp)")
    if np.any(ms < 0):
        k = int(np.argmax(ms < 0))
        raise TraceError(f"{path}:{linenos[k]}: negative timestamp {ms[k]:g} ms (expected >= 0)")
    _check_times(path, ms, linenos)
    if ms[-1] <= 0:
        raise TraceError(f"{path}: zero-length trace: last timestamp is 0 ms "
                         f"(expected the period, > 0, on the last line)")
    return ms.astype(np.int64)


def load_mahimahi(path: Path, bin_s: float = 0.1, **_ignored) -> Trace:
    """Mahimahi: capacity = 1500-byte opportunities per ``bin_s`` bin.

    mm-link loops the file with a period equal to the last timestamp, so the trace lasts
    exactly that long; an opportunity at the period itself belongs to the next loop's
    instant 0 and is counted in the first bin.
    """
    if not bin_s > 0:
        raise TraceError(f"{path}: bin_s must be > 0, got {bin_s}")
    ms = load_mahimahi_ms(path)
    period_ms = int(ms[-1])
    bin_ms = bin_s * 1000.0
    nbins = int(np.ceil(period_ms / bin_ms - 1e-9))
    idx = np.minimum(((ms % period_ms) // bin_ms).astype(np.int64), nbins - 1)
    counts = np.bincount(idx, minlength=nbins).astype(np.float64)
    starts_s = np.arange(nbins) * bin_s
    widths_s = np.append(np.full(nbins - 1, bin_s), period_ms / 1000.0 - starts_s[-1])
    rates = counts * MAHIMAHI_PACKET_BITS / widths_s / 1e6
    return Trace(starts_s, rates, float(widths_s[-1]), name=Path(path).name, source=str(path),
                 meta={"format": "mahimahi", "bin_s": bin_s, "packets": len(ms),
                       "period_ms": period_ms})


def _time_rate_loader(fmt: str, default_convention: str) -> Callable[..., Trace]:
    def load_time_rate(path: Path, convention: str | None = None, **_ignored) -> Trace:
        text = _read_text(path)
        values, linenos = _numeric_rows(path, text, 2, "'time_s Mbps'")
        return _trace_from_time_rate(path, values[:, 0], values[:, 1], linenos,
                                     convention or default_convention, fmt)

    load_time_rate.__doc__ = (f"``time_s Mbps`` lines ({fmt}); timing convention default "
                              f"{default_convention!r}.")
    return load_time_rate


load_cooked = _time_rate_loader("cooked", "end")
load_challenge = _time_rate_loader("challenge", "end")


def load_iperf3(path: Path, convention: str | None = None, **_ignored) -> Trace:
    """iperf3 interval log: ``start_s Mbps`` lines (Solis), or an ``iperf3 --json`` report."""
    text = _read_text(path)
    if text.lstrip().startswith("{"):
        try:
            report = json.loads(text)
            intervals = report["intervals"]
            starts = np.array([float(iv["sum"]["start"]) for iv in intervals])
            ends = np.array([float(iv["sum"]["end"]) for iv in intervals])
            rates = np.array([float(iv["sum"]["bits_per_second"]) / 1e6 for iv in intervals])
        except (ValueError, KeyError, TypeError) as exc:
            raise TraceError(f"{path}: not an iperf3 --json report (missing or bad {exc}; "
                             f"expected intervals[].sum.start/end/bits_per_second)") from None
        if len(starts) == 0:
            raise TraceError(f"{path}: iperf3 report has no intervals (expected at least one)")
        nums = np.arange(1, len(starts) + 1)
        _check_times(path, starts, nums)
        _check_rates(path, rates, nums, "Mbps")
        return _trace_from_time_rate(path, starts, rates, nums, "start", "iperf3",
                                     last_step_s=float(ends[-1] - starts[-1]))
    values, linenos = _numeric_rows(path, text, 2, "'timestamp_s Mbps'")
    return _trace_from_time_rate(path, values[:, 0], values[:, 1], linenos,
                                 convention or "start", "iperf3")


def _csv_rows(path: Path, required: list[str]) -> tuple[list[dict], list[int]]:
    text = _read_text(path)
    reader = csv.DictReader(io.StringIO(text))
    header = reader.fieldnames or []
    missing = [c for c in required if c not in header]
    if missing:
        raise TraceError(f"{path}:1: header lacks column(s) {', '.join(missing)} "
                         f"(expected a header with {', '.join(required)})")
    rows, linenos = [], []
    for row in reader:
        if not any((v or "").strip() for v in row.values() if isinstance(v, str)):
            raise TraceError(f"{path}:{reader.line_num}: empty line (expected a CSV row)")
        rows.append(row)
        linenos.append(reader.line_num)
    if not rows:
        raise TraceError(f"{path}: no data rows after the header (expected at least one)")
    return rows, linenos


def _csv_float(path: Path, lineno: int, row: dict, col: str, allow_missing: bool = False):
    v = (row.get(col) or "").strip()
    if allow_missing and v in ("-", ""):
        return None
    try:
        x = float(v)
    except ValueError:
        raise TraceError(f"{path}:{lineno}: column {col}: non-numeric {v!r} "
                         f"(expected a number)") from None
    if not np.isfinite(x):
        raise TraceError(f"{path}:{lineno}: column {col}: non-finite {v!r} (expected a number)")
    return x


def load_gnettrack(path: Path, direction: str = "down", ping: str = "interpolate",
                   **_ignored) -> Trace:
    """G-NetTrack CSV (ucc-5g): per-second ``DL_bitrate`` (or ``UL_bitrate``) in kbps.

    Rows are grouped by their 1-s ``Timestamp`` (G-NetTrack writes several rows in some
    seconds; their mean is used); each second's value holds until the next logged second.
    G-NetTrack stops measuring the download while its ping test runs (maintainers, in
    uccmisl/5Gdataset#2), so seconds carrying ping values are by default replaced by linear
    interpolation between the neighbouring non-ping seconds (``ping="keep"`` leaves them).
    Missing values (``-``) are skipped.
    """
    col = {"down": "DL_bitrate", "up": "UL_bitrate"}.get(direction)
    if col is None:
        raise TraceError(f"{path}: direction must be 'down' or 'up', got {direction!r}")
    if ping not in ("interpolate", "keep"):
        raise TraceError(f"{path}: ping must be 'interpolate' or 'keep', got {ping!r}")
    rows, linenos = _csv_rows(path, ["Timestamp", col])
    secs: list[float] = []
    vals: list[list[float]] = []
    pinged: list[bool] = []
    first_line: list[int] = []
    t_first = None
    for row, ln in zip(rows, linenos):
        ts = (row.get("Timestamp") or "").strip()
        try:
            t = datetime.strptime(ts, "%Y.%m.%d_%H.%M.%S")
        except ValueError:
            raise TraceError(f"{path}:{ln}: column Timestamp: {ts!r} (expected "
                             f"YYYY.MM.DD_HH.MM.SS)") from None
        t_first = t_first or t
        s = (t - t_first).total_seconds()
        kbps = _csv_float(path, ln, row, col, allow_missing=True)
        if kbps is not None and kbps < 0:
            raise TraceError(f"{path}:{ln}: column {col}: negative rate {kbps:g} kbps "
                             f"(expected >= 0)")
        is_ping = (row.get("PINGAVG") or "-").strip() not in ("-", "")
        if secs and s < secs[-1]:
            raise TraceError(f"{path}:{ln}: time goes backwards ({ts} after an earlier row "
                             f"{secs[-1] - s:g} s later; expected non-decreasing Timestamp)")
        if not secs or s > secs[-1]:
            secs.append(s)
            vals.append([])
            pinged.append(False)
            first_line.append(ln)
        if kbps is not None:
            vals[-1].append(kbps)
        pinged[-1] = pinged[-1] or is_ping
    have = np.array([len(v) > 0 for v in vals])
    if not have.any():
        raise TraceError(f"{path}: no {col} values (all '-'; expected kbps numbers)")
    t = np.array(secs)[have]
    mbps = np.array([np.mean(v) for v in vals if v]) / 1000.0
    ping_mask = np.array(pinged)[have]
    lines = np.array(first_line)[have]
    if ping == "interpolate" and ping_mask.any() and (~ping_mask).sum() >= 1:
        mbps = mbps.copy()
        mbps[ping_mask] = np.interp(t[ping_mask], t[~ping_mask], mbps[~ping_mask])
    tr = _trace_from_time_rate(path, t, mbps, lines, "start", "gnettrack", last_step_s=1.0)
    tr.meta.update(direction=direction, ping=ping, ping_seconds=int(ping_mask.sum()))
    return tr


LUMOS_COLUMNS = ["app_throughput", "delivery_time"]


def load_lumos(path: Path, **_ignored) -> Trace:
    """Lumos per-chunk CSV: each chunk's ``app_throughput`` (kbps) held for its
    ``delivery_time`` (s), chunks laid end to end (the logs carry no absolute times, so idle
    gaps between chunk downloads are not represented). Zero-time rows are skipped."""
    rows, linenos = _csv_rows(path, LUMOS_COLUMNS)
    widths, rates, lines = [], [], []
    for row, ln in zip(rows, linenos):
        kbps = _csv_float(path, ln, row, "app_throughput")
        dt = _csv_float(path, ln, row, "delivery_time")
        if kbps < 0:
            raise TraceError(f"{path}:{ln}: column app_throughput: negative rate {kbps:g} kbps "
                             f"(expected >= 0)")
        if dt < 0:
            raise TraceError(f"{path}:{ln}: column delivery_time: negative {dt:g} s "
                             f"(expected >= 0)")
        if dt > 0:
            widths.append(dt)
            rates.append(kbps / 1000.0)
            lines.append(ln)
    if not widths:
        raise TraceError(f"{path}: zero-length trace: every delivery_time is 0 "
                         f"(expected positive seconds)")
    w = np.array(widths)
    starts = np.concatenate([[0.0], np.cumsum(w)[:-1]])
    return Trace(starts, np.array(rates), float(w[-1]), name=Path(path).name, source=str(path),
                 meta={"format": "lumos", "chunks": len(w)})


FORMATS: dict[str, Callable[..., Trace]] = {
    "mahimahi": load_mahimahi,
    "cooked": load_cooked,
    "fcc": load_cooked,
    "hsdpa": load_cooked,
    "oboe": load_cooked,
    "puffer": load_cooked,
    "challenge": load_challenge,
    "iperf3": load_iperf3,
    "gnettrack": load_gnettrack,
    "lumos": load_lumos,
}

# Folder names of the public datasets (as laid out in the shared trace directory) -> format.
_DIR_HINTS = {
    "mahimahi": "mahimahi", "fcc": "cooked", "hsdpa": "cooked", "oboe": "cooked",
    "puffer": "cooked", "solis-wifi": "iperf3", "lumos-4g-abr": "lumos", "ucc-5g": "gnettrack",
}


def detect(path: Path) -> str:
    """Guess the format of ``path`` from its content (and folder names when the content is
    ambiguous between the ``time rate`` formats). Raises TraceError if nothing fits."""
    path = Path(path)
    text = _read_text(path)
    head = text.lstrip()[:4096]
    first = head.split("\n", 1)[0]
    if "DL_bitrate" in first and "Timestamp" in first:
        return "gnettrack"
    if "app_throughput" in first and "delivery_time" in first:
        return "lumos"
    if head.startswith("{") and '"intervals"' in text:
        return "iperf3"
    if path.suffix in (".up", ".down"):
        return "mahimahi"
    lines = [ln for ln in head.split("\n")[:50] if ln.strip()]
    if len(lines) > 1 and not text.endswith("\n"):
        lines = lines[:-1]  # possibly cut in the middle by the 4 KiB window
    ncols = {len(ln.split()) for ln in lines}
    if ncols == {1} and all(ln.strip().isdigit() for ln in lines):
        return "mahimahi"
    if ncols == {2}:
        parts = [p.lower() for p in path.resolve().parts]
        if "short-video-challenge" in parts and "network" in parts:
            return "challenge"
        for part in reversed(parts[:-1]):
            if part in _DIR_HINTS:
                return _DIR_HINTS[part]
        if path.name.startswith("wifi_"):
            return "iperf3"
        return "cooked"
    raise TraceError(f"{path}:1: unknown trace format (expected one of: Mahimahi ms lines, "
                     f"'time_s Mbps' lines, G-NetTrack or Lumos CSV, iperf3 JSON); "
                     f"pass a format explicitly")


def load(path: str | Path, fmt: str | None = None, *, convention: str | None = None,
         bin_s: float = 0.1, **options) -> Trace:
    """Load one trace file into a ``Trace``.

    path: the file. fmt: one of ``FORMATS`` or None to auto-detect.
    convention: ``"start"``/``"end"`` for ``time rate`` formats (None: the format's default).
    bin_s: Mahimahi bin width (s). options: per-format extras (gnettrack ``direction``,
    ``ping``).
    """
    path = Path(path)
    if fmt is None:
        fmt = detect(path)
    loader = FORMATS.get(fmt)
    if loader is None:
        raise TraceError(f"{path}: unknown format {fmt!r} (expected one of "
                         f"{', '.join(sorted(FORMATS))})")
    return loader(path, convention=convention, bin_s=bin_s, **options)
