"""User behaviour: per-video watch-time distributions and seeded swipe sampling.

``WatchDist`` is a probability mass function over 1-s bins: ``pmf[i]`` for ``i < n`` is the
probability that the viewer swipes away during second ``[i, i+1)``; the last entry
``pmf[n]`` is the probability of watching the whole ``length_s``-second video. It is the
Dashlet representation, and the short-video challenge retention curves convert into it.

Loaders: ``load_retention`` (challenge ``user-retention/<video>`` files: ``t_s retention``),
``load_dashlet`` (Dashlet ``turk/<video>.txt``: one probability per line), ``load_swipe_dir``
(a whole folder of either). ``synthetic_dist`` makes a default for any length.

``sample_watch_times(dists, seed)`` draws one watch time per video, deterministic in
``seed`` and in each video's position, so every scheduler sees the same swipes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from traces.formats import _numeric_rows, _read_text
from traces.trace import TraceError

SUM_TOLERANCE = 1e-3


@dataclass(frozen=True)
class WatchDist:
    """Watch-time distribution of one video.

    pmf: probabilities over 1-s bins; the last entry = watched to the end (sums to 1).
    length_s: video length (s); ``len(pmf) - 1 == floor(length_s)`` for loaded data.
    name, source: for run metadata.
    """

    pmf: np.ndarray
    length_s: float
    name: str = "video"
    source: str = ""
    meta: dict = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        p = np.asarray(self.pmf, dtype=np.float64)
        object.__setattr__(self, "pmf", p)
        where = self.source or self.name
        if p.ndim != 1 or len(p) < 1:
            raise TraceError(f"{where}: pmf must be 1-D with at least one bin")
        if not np.all(np.isfinite(p)) or np.any(p < 0):
            raise TraceError(f"{where}: pmf has negative or non-finite entries")
        if abs(p.sum() - 1.0) > SUM_TOLERANCE:
            raise TraceError(f"{where}: pmf sums to {p.sum():.6f} (expected 1)")
        object.__setattr__(self, "pmf", p / p.sum())
        if not self.length_s >= len(p) - 1:
            raise TraceError(f"{where}: length_s {self.length_s} shorter than the "
                             f"{len(p) - 1} swipe bins")
        if self.length_s <= 0:
            raise TraceError(f"{where}: length_s must be > 0, got {self.length_s}")

    @property
    def n_bins(self) -> int:
        """Number of 1-s swipe bins (the end bin excluded)."""
        return len(self.pmf) - 1

    @property
    def completion(self) -> float:
        """Probability of watching to the end."""
        return float(self.pmf[-1])

    def retention(self, t_s: float) -> float:
        """P(still watching at ``t_s``): 1 at 0, linear within each second (swipes are
        uniform inside their second), ``completion`` from the last bin on, 0 after the end."""
        if t_s <= 0:
            return 1.0
        if t_s > self.length_s:
            return 0.0
        n = self.n_bins
        if t_s >= n:
            return self.completion
        i = int(np.floor(t_s))
        above = float(self.pmf[i + 1:].sum())
        return above + float(self.pmf[i]) * (i + 1 - t_s)

    def conditional_retention(self, t_s: float, given_s: float) -> float:
        """P(still watching at ``t_s`` | still watching at ``given_s``), ``t_s >= given_s``
        (1 when t_s <= given_s); 0 if nobody is left at ``given_s``."""
        if t_s <= given_s:
            return 1.0
        base = self.retention(given_s)
        return self.retention(t_s) / base if base > 0 else 0.0

    def mean_watch_s(self) -> float:
        """Expected watch time (s)."""
        n = self.n_bins
        return float(np.sum(self.pmf[:n] * (np.arange(n) + 0.5)) + self.pmf[n] * self.length_s)

    def sample(self, rng: np.random.Generator) -> float:
        """One watch time (s): a bin by the pmf, then uniform within its second; the end bin
        gives ``length_s``."""
        i = int(rng.choice(len(self.pmf), p=self.pmf))
        u = float(rng.random())
        if i == self.n_bins:
            return float(self.length_s)
        return min(i + u, float(self.length_s))


def sample_watch_times(dists: list[WatchDist], seed: int) -> list[float]:
    """One watch time (s) per video. Video *k*'s time depends only on (seed, k, its
    distribution), so the same seed gives the same swipes to every scheduler and a longer
    feed does not change earlier videos."""
    return [d.sample(np.random.default_rng([int(seed), k])) for k, d in enumerate(dists)]


# -- loaders -----------------------------------------------------------------------------
def load_retention(path: str | Path, length_s: float | None = None) -> WatchDist:
    """A challenge retention curve: rows ``t_s retention`` from ``0 1``, the fraction of
    viewers still watching at the end of second t, non-increasing.

    The challenge files end with an end-mark row ``<length+1> 0`` that is not part of the
    video: with ``length_s`` None, a final row with retention 0 one second after the
    previous row is taken as that mark. The drop over second t is the share swiping in it;
    the retention at the video's last second is the completion probability.
    """
    path = Path(path)
    values, linenos = _numeric_rows(path, _read_text(path), 2, "'t_s retention'")
    t, ret = values[:, 0], values[:, 1]
    expected = np.arange(len(t), dtype=np.float64)
    if np.any(t != expected):
        k = int(np.argmax(t != expected))
        raise TraceError(f"{path}:{linenos[k]}: time {t[k]:g} (expected {k}: whole seconds "
                         f"from 0 in steps of 1)")
    if ret[0] != 1:
        raise TraceError(f"{path}:{linenos[0]}: retention {ret[0]:g} at t=0 (expected 1)")
    bad = (ret < 0) | (ret > 1)
    if bad.any():
        k = int(np.argmax(bad))
        raise TraceError(f"{path}:{linenos[k]}: retention {ret[k]:g} (expected 0..1)")
    up = np.diff(ret) > 1e-12
    if up.any():
        k = int(np.argmax(up)) + 1
        raise TraceError(f"{path}:{linenos[k]}: retention rises from {ret[k - 1]:g} to "
                         f"{ret[k]:g} (expected non-increasing)")
    if length_s is None:
        n = len(t) - 1 if (len(t) > 2 and ret[-1] == 0) else len(t)
        n -= 1  # rows 0..L
        length = float(n)
    else:
        n = int(np.floor(length_s))
        if n + 1 > len(t):
            raise TraceError(f"{path}: {len(t)} rows cover {len(t) - 1} s, "
                             f"shorter than length_s {length_s}")
        length = float(length_s)
    if n < 1:
        raise TraceError(f"{path}: zero-length video (expected rows 0..L with L >= 1)")
    r = ret[: n + 1]
    pmf = np.append(r[:-1] - r[1:], r[-1])
    return WatchDist(pmf, length, name=path.name, source=str(path),
                     meta={"format": "challenge-retention"})


def load_dashlet(path: str | Path) -> WatchDist:
    """A Dashlet MTurk file: line i (< n) = P(swipe during [i, i+1)), last line = P(watch
    to the end); the video is n = lines - 1 seconds long (floor of its length)."""
    path = Path(path)
    values, linenos = _numeric_rows(path, _read_text(path), 1, "one probability per line")
    p = values[:, 0]
    if np.any(p < 0) or np.any(p > 1):
        k = int(np.argmax((p < 0) | (p > 1)))
        raise TraceError(f"{path}:{linenos[k]}: probability {p[k]:g} (expected 0..1)")
    if len(p) < 2:
        raise TraceError(f"{path}: zero-length video: 1 line (expected n+1 lines, n >= 1)")
    if abs(p.sum() - 1.0) > SUM_TOLERANCE:
        raise TraceError(f"{path}: probabilities sum to {p.sum():.6f} (expected 1)")
    return WatchDist(p, float(len(p) - 1), name=path.stem, source=str(path),
                     meta={"format": "dashlet"})


def detect_swipe_format(path: Path) -> str:
    """``retention`` (two columns) or ``dashlet`` (one column)."""
    first = _read_text(path).split("\n", 1)[0].split()
    if len(first) == 2:
        return "retention"
    if len(first) == 1:
        return "dashlet"
    raise TraceError(f"{path}:1: unknown swipe format (expected 't_s retention' or one "
                     f"probability per line)")


def load_swipe(path: str | Path, fmt: str | None = None) -> WatchDist:
    """Load one watch-time distribution file (``fmt``: retention, dashlet or None=detect)."""
    path = Path(path)
    fmt = fmt or detect_swipe_format(path)
    if fmt == "retention":
        return load_retention(path)
    if fmt == "dashlet":
        return load_dashlet(path)
    raise TraceError(f"{path}: unknown swipe format {fmt!r} (expected retention or dashlet)")


def load_swipe_dir(folder: str | Path, fmt: str | None = None) -> list[WatchDist]:
    """Every distribution in ``folder`` (sorted by name)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise TraceError(f"{folder}: not a folder of swipe distributions")
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    if not files:
        raise TraceError(f"{folder}: no swipe distribution files")
    return [load_swipe(p, fmt) for p in files]


# -- synthetic default -------------------------------------------------------------------
# Calibration (fitted by `testbed traces fit` from the Dashlet MTurk data in
# shared/traces/dashlet-swipe/turk, written into synthetic_params.json under "swipe"): the
# median completion probability and the median expected watched fraction of a video. Used
# when that file lacks them: PROVENANCE.md's figures for the same data (0.401 and 0.64).
FALLBACK_SWIPE = {"completion": 0.401, "mean_fraction": 0.64}


def _swipe_calibration() -> dict:
    from traces.synthetic import PARAMS_PATH

    try:
        return json.loads(PARAMS_PATH.read_text())["swipe"]
    except (OSError, KeyError, json.JSONDecodeError):
        return dict(FALLBACK_SWIPE)


def _truncexp_mean(lam: float) -> float:
    """Mean of an exponential with rate ``lam`` truncated to [0, 1)."""
    if abs(lam) < 1e-9:
        return 0.5
    return 1.0 / lam - 1.0 / np.expm1(lam)


def _solve_rate(target_mean: float) -> float:
    lo, hi = -50.0, 50.0  # the mean falls from ~1 to ~0 as the rate grows
    for _ in range(100):
        mid = (lo + hi) / 2
        if _truncexp_mean(mid) > target_mean:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def synthetic_dist(length_s: float, completion: float | None = None,
                   mean_fraction: float | None = None, name: str = "synthetic") -> WatchDist:
    """A default watch-time distribution for a ``length_s``-second video.

    A share ``completion`` watches to the end; the others swipe at a fraction of the video
    drawn from an exponential truncated to [0, 1) whose rate makes the overall expected
    watched fraction ``mean_fraction`` (early swipes most likely, as in short-video data).
    Defaults: the calibration fitted from the Dashlet MTurk study (see module notes).
    """
    cal = _swipe_calibration()
    c = cal["completion"] if completion is None else completion
    f = cal["mean_fraction"] if mean_fraction is None else mean_fraction
    if not 0 <= c < 1 or not c <= f <= 1:
        raise TraceError(f"synthetic_dist: need 0 <= completion < 1 and completion <= "
                         f"mean_fraction <= 1, got {c}, {f}")
    n = int(np.floor(length_s))
    if n < 1:
        raise TraceError(f"synthetic_dist: length_s must be >= 1, got {length_s}")
    lam = _solve_rate((f - c) / (1 - c))
    # Mass of the truncated exponential over the fraction interval of each 1-s bin.
    edges = np.minimum(np.arange(n + 1) / length_s, 1.0)
    edges[-1] = 1.0
    if abs(lam) < 1e-9:
        cdf = edges
    else:
        cdf = -np.expm1(-lam * edges) / -np.expm1(-lam)
    pmf = np.append((1 - c) * np.diff(cdf), c)
    return WatchDist(pmf, float(length_s), name=name,
                     source=f"synthetic completion={c:g} mean_fraction={f:g}",
                     meta={"format": "synthetic", "rate": lam})


def fit_swipe_calibration(dists: list[WatchDist]) -> dict:
    """Median completion probability and median expected watched fraction of ``dists``."""
    if not dists:
        raise TraceError("fit_swipe_calibration: no distributions")
    comp = np.array([d.completion for d in dists])
    frac = np.array([d.mean_watch_s() / d.length_s for d in dists])
    return {"completion": float(np.median(comp)), "mean_fraction": float(np.median(frac)),
            "n_videos": len(dists)}
