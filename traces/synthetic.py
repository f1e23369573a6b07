"""Markov-modulated synthetic bandwidth traces, with parameters fitted from real datasets.

Model (one per *profile*): time advances in steps of ``step_s``; a hidden state follows a
Markov chain with transition matrix ``P``; state 0 may be an *outage* state (rate 0), the
others are rate bands cut at quantiles of the real per-step rates; in a band, the rate of a
step is log-normal with the band's fitted mean/sd of log-rate, clipped to the band, driven
by one AR(1) standard-normal sequence (``within_state_rho``, fitted on consecutive steps in
the same state) so rates keep short-term memory inside a state. The chain starts in its
empirical occupancy distribution.

``fit_profile`` estimates these from real traces (each resampled into ``step_s`` bins,
transitions counted within each file); ``testbed traces fit`` writes every profile into
``traces/data/synthetic_params.json`` together with the source datasets and the real data's
statistics (used by the calibration tests). ``generate`` is deterministic in its seed.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np

from traces.trace import Trace, TraceError

PARAMS_PATH = Path(__file__).resolve().parent / "data" / "synthetic_params.json"
DEFAULT_PROFILE = "challenge-medium"
OUTAGE_MBPS = 0.05  # below this a step counts as an outage (emitted as exactly 0)

# Profile name -> (dataset folders under the trace directory, step_s, number of rate bands).
PROFILE_SOURCES: dict[str, tuple[list[str], float, int]] = {
    "challenge-high": (["short-video-challenge/network/high"], 0.5, 8),
    "challenge-medium": (["short-video-challenge/network/medium"], 0.5, 8),
    "challenge-low": (["short-video-challenge/network/low"], 0.5, 8),
    "hsdpa": (["hsdpa"], 1.0, 8),
    "fcc": (["fcc"], 5.0, 6),
    "mahimahi-cellular": (["mahimahi"], 1.0, 8),
    "solis-wifi": (["solis-wifi"], 1.0, 8),
    "ucc-5g": (["ucc-5g"], 1.0, 8),
}


def summary_stats(rates_mbps: np.ndarray) -> dict:
    """Statistics of per-step rates: mean, median, p5, p95 (Mbps), outage share, lag-1
    autocorrelation (pooled)."""
    r = np.asarray(rates_mbps, dtype=np.float64)
    ac = float(np.corrcoef(r[:-1], r[1:])[0, 1]) if len(r) > 2 and r.std() > 0 else 0.0
    return {"mean_mbps": float(r.mean()), "median_mbps": float(np.median(r)),
            "p5_mbps": float(np.percentile(r, 5)), "p95_mbps": float(np.percentile(r, 95)),
            "outage_share": float(np.mean(r < OUTAGE_MBPS)), "lag1_autocorr": ac}


def fit_profile(traces: list[Trace], step_s: float, n_bands: int = 8) -> dict:
    """Fit the Markov-modulated model to ``traces`` resampled into ``step_s`` bins."""
    from traces.ops import resample

    if not traces:
        raise TraceError("fit_profile: no traces to fit")
    series = []
    for tr in traces:
        r = resample(tr, step_s).rates_mbps
        if tr.duration_s % step_s > 1e-9 and len(r) > 1:
            r = r[:-1]  # the short last bin is not a full step
        series.append(r)
    pooled = np.concatenate(series)
    positive = pooled[pooled >= OUTAGE_MBPS]
    if len(positive) < n_bands * 10:
        raise TraceError(f"fit_profile: only {len(positive)} non-outage steps "
                         f"(expected at least {n_bands * 10})")
    inner = np.quantile(positive, np.linspace(0, 1, n_bands + 1)[1:-1])
    edges = np.concatenate([[OUTAGE_MBPS], inner, [np.inf]])
    has_outage = bool(np.any(pooled < OUTAGE_MBPS))

    def state_of(r: np.ndarray) -> np.ndarray:
        s = np.searchsorted(edges, r, side="right")  # 0 = outage, 1..n_bands = bands
        return s if has_outage else s - 1

    k = n_bands + (1 if has_outage else 0)
    counts = np.zeros((k, k))
    occupancy = np.zeros(k)
    for r in series:
        s = state_of(r)
        np.add.at(counts, (s[:-1], s[1:]), 1.0)
        occupancy += np.bincount(s, minlength=k)
    # A state never left in the data (or seen only at a file's end) stays where it is.
    for i in range(k):
        if counts[i].sum() == 0:
            counts[i, i] = 1.0
    P = counts / counts.sum(axis=1, keepdims=True)
    states = []
    s_all = state_of(pooled)
    for i in range(k):
        band = i - 1 if has_outage else i
        if has_outage and i == 0:
            states.append({"outage": True, "lo_mbps": 0.0, "hi_mbps": OUTAGE_MBPS})
            continue
        x = np.log(pooled[s_all == i])
        states.append({"outage": False, "lo_mbps": float(edges[band]),
                       "hi_mbps": float(edges[band + 1]) if np.isfinite(edges[band + 1])
                       else float(pooled.max()),
                       "log_mean": float(x.mean()), "log_sd": float(x.std())})
    # Within-state memory: lag-1 correlation of standardised log-rates over consecutive
    # steps that stay in one (non-outage) state.
    num = den = 0.0
    for r in series:
        s = state_of(r)
        z = np.full(len(r), np.nan)
        for i, st in enumerate(states):
            m = s == i
            if not st["outage"] and m.any() and st["log_sd"] > 0:
                z[m] = (np.log(r[m]) - st["log_mean"]) / st["log_sd"]
        same = (s[1:] == s[:-1]) & np.isfinite(z[1:]) & np.isfinite(z[:-1])
        num += float(np.sum(z[1:][same] * z[:-1][same]))
        den += float(np.sum(z[:-1][same] ** 2))
    rho = float(np.clip(num / den, 0.0, 0.99)) if den > 0 else 0.0
    return {"step_s": step_s, "states": states, "transitions": P.round(6).tolist(),
            "within_state_rho": round(rho, 6),
            "initial": (occupancy / occupancy.sum()).round(6).tolist(),
            "fitted_on": summary_stats(pooled), "n_traces": len(traces),
            "n_steps": len(pooled)}


@lru_cache(maxsize=4)
def _load_params(path: str) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise TraceError(f"{path}: missing fitted parameters (run `testbed traces fit "
                         f"--out {path}`)") from None
    except json.JSONDecodeError as exc:
        raise TraceError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg})") from None


def profiles(params_path: Path = PARAMS_PATH) -> dict[str, dict]:
    """Fitted profiles by name."""
    return _load_params(str(params_path))["profiles"]


def generate(profile: str | dict = DEFAULT_PROFILE, duration_s: float = 600.0, seed: int = 0,
             params_path: Path = PARAMS_PATH) -> Trace:
    """A synthetic trace of ``duration_s`` seconds from a fitted profile (its name, or the
    parameter dict itself); the same (profile, duration, seed) gives the same trace."""
    if isinstance(profile, str):
        table = profiles(params_path)
        if profile not in table:
            raise TraceError(f"unknown synthetic profile {profile!r} (expected one of "
                             f"{', '.join(sorted(table))})")
        name, p = profile, table[profile]
    else:
        name, p = "custom", profile
    if not duration_s > 0:
        raise TraceError(f"synthetic trace: duration_s must be > 0, got {duration_s}")
    step_s = float(p["step_s"])
    n = int(np.ceil(duration_s / step_s - 1e-9))
    P = np.asarray(p["transitions"], dtype=np.float64)
    P = P / P.sum(axis=1, keepdims=True)
    cum = np.cumsum(P, axis=1)
    init = np.asarray(p["initial"], dtype=np.float64)
    rng = np.random.default_rng(seed)
    u = rng.random(n)
    e = rng.standard_normal(n)
    rho = float(p.get("within_state_rho", 0.0))
    z = np.empty(n)
    z[0] = e[0]
    k = np.sqrt(1.0 - rho * rho)
    for i in range(1, n):
        z[i] = rho * z[i - 1] + k * e[i]
    s = np.empty(n, dtype=np.int64)
    s[0] = min(int(np.searchsorted(np.cumsum(init / init.sum()), u[0], side="right")),
               len(init) - 1)
    for i in range(1, n):
        s[i] = min(int(np.searchsorted(cum[s[i - 1]], u[i], side="right")), len(init) - 1)
    rates = np.zeros(n)
    for i, st in enumerate(p["states"]):
        m = s == i
        if st["outage"] or not m.any():
            continue
        r = np.exp(st["log_mean"] + st["log_sd"] * z[m])
        rates[m] = np.clip(r, st["lo_mbps"], st["hi_mbps"])
    times = np.arange(n) * step_s
    last = duration_s - times[-1]
    return Trace(times, rates, float(last), name=f"synthetic-{name}-seed{seed}",
                 source=f"synthetic:{name} seed={seed} duration_s={duration_s:g} "
                        f"params={Path(params_path).name}",
                 meta={"format": "synthetic", "profile": name, "seed": seed})
