"""Per-session accounting: the event log (``players.session`` schema) in, the summary out.

The same function summarises an emulated player's log and a simulated one, so the two are
comparable by construction. Definitions (DESIGN.md):
- stall_s: waits for a frame after the video's first frame (truncated stalls included);
  startup_s: per video, from coming on screen to its first frame (reported apart).
- bytes_wasted = bytes_downloaded - bytes_played, where bytes_downloaded counts completed
  downloads plus the partial bytes of cancelled ones, and bytes_played counts the full size
  of every chunk of which any part was shown. Replaced representations, chunks never
  reached, and cancelled partials are therefore all waste.
- QoE = sum_i q_i * played_i / chunk_s - mu * stall_s - startup * startup waits
  - lambda * sum |q_i - q_{i-1}|, with q in Mbps(-equivalent) and consecutive chunks of
  one video for the switch term. ``startup`` (None) follows ``mu``: the challenge's simulator
  charges a video's startup wait like a stall (every wait of the viewer, reported as
  rebuffer_s = stall_s + startup waits); ``startup = 0`` is DESIGN.md's stall-only form.
  challenge_score = QoE - download_weight * Mbit downloaded.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

SUMMARY_FIELDS = (
    "stall_s", "stall_count", "startup_s_mean", "startup_s_p95", "rebuffer_s",
    "bytes_downloaded", "bytes_played", "bytes_wasted", "waste_ratio",
    "quality_mbps_mean", "switch_mbps", "qoe", "challenge_score",
    "videos_started", "play_s", "session_s", "cpr", "ttfc_s",
    "decode_s", "chunks_decoded", "cpu_s", "peak_rss_mb",
)


@dataclass(frozen=True)
class QoEWeights:
    """mu: per stall second; startup: per startup-wait second; lam: per Mbps of switch;
    download: per Mbit (challenge score)."""

    mu: float = 1.85
    lam: float = 1.0
    download: float = 0.5
    startup: float | None = None  # None: the same as mu

    @property
    def startup_weight(self) -> float:
        return self.mu if self.startup is None else self.startup


def read_events(path: str | Path) -> list[dict]:
    """Read a JSON-lines event log, naming the file and line of any bad record."""
    out = []
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            line = line.strip()
            if not line:
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{n}: not a JSON object ({exc.msg})") from None
            if not isinstance(rec, dict) or "event" not in rec or "t_s" not in rec:
                raise ValueError(f"{path}:{n}: expected an object with 'event' and 't_s'")
            out.append(rec)
    return out


def _p95(xs: list[float]) -> float:
    if not xs:
        return 0.0
    s = sorted(xs)
    k = (len(s) - 1) * 0.95
    lo, hi = math.floor(k), math.ceil(k)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def summarize(
    events: Iterable[Mapping],
    weights: QoEWeights = QoEWeights(),
    resources: Mapping[str, float] | None = None,
) -> dict:
    """Summary of one session. resources: optional {"cpu_s", "peak_rss_mb"} from the sampler."""
    stall_s = 0.0
    stall_count = 0
    startups: list[float] = []
    startup_open_s = 0.0
    bytes_downloaded = 0
    bytes_played = 0
    quality = 0.0
    switch = 0.0
    played_s = 0.0
    q_sum, q_n = 0.0, 0
    decode_s = 0.0
    chunks_decoded = 0
    videos_started = 0
    last_q: dict[int, float] = {}
    t_end = 0.0
    stall_open_s: float | None = None
    for e in events:
        kind = e["event"]
        t_end = max(t_end, float(e["t_s"]))
        if stall_open_s is not None and kind in ("swipe", "video_start", "session_end"):
            # A stall the log never closed (the user swiped away while waiting, or a
            # writer died): it lasted until the video was left.
            stall_s += float(e["t_s"]) - stall_open_s
            stall_open_s = None
        if kind == "stall_start":
            stall_count += 1
            stall_open_s = float(e["t_s"])
        elif kind == "stall_end":
            stall_s += float(e["stall_s"])
            stall_open_s = None
        elif kind == "play_start":
            startups.append(float(e["startup_s"]))
        elif kind == "video_start":
            videos_started += 1
        elif kind == "download_done" or kind == "download_cancel":
            bytes_downloaded += int(e["bytes"])
        elif kind == "chunk_played":
            bytes_played += int(e["bytes"])
            q = float(e["quality_mbps"])
            frac = float(e["played_s"]) / float(e["chunk_s"])
            quality += q * frac
            q_sum += q
            q_n += 1
            played_s += float(e["played_s"])
            pos = int(e["position"])
            if pos in last_q:
                switch += abs(q - last_q[pos])
            last_q[pos] = q
        elif kind == "decode_done":
            decode_s += float(e["decode_s"])
            chunks_decoded += 1
        elif kind == "session_end":
            startup_open_s = float(e.get("startup_open_s", 0.0))
    startup_total = sum(startups) + startup_open_s
    rebuffer = stall_s + startup_total
    qoe = quality - weights.mu * stall_s - weights.startup_weight * startup_total \
        - weights.lam * switch
    mbit = bytes_downloaded * 8 / 1e6
    wasted = bytes_downloaded - bytes_played
    res = resources or {}
    return {
        "stall_s": stall_s,
        "stall_count": stall_count,
        "startup_s_mean": (sum(startups) / len(startups)) if startups else 0.0,
        "startup_s_p95": _p95(startups),
        "rebuffer_s": rebuffer,
        "bytes_downloaded": bytes_downloaded,
        "bytes_played": bytes_played,
        "bytes_wasted": wasted,
        "waste_ratio": wasted / bytes_downloaded if bytes_downloaded else 0.0,
        "quality_mbps_mean": q_sum / q_n if q_n else 0.0,
        "switch_mbps": switch,
        "qoe": qoe,
        "challenge_score": qoe - weights.download * mbit,
        "videos_started": videos_started,
        "play_s": played_s,
        "session_s": t_end,
        "cpr": played_s / t_end if t_end > 0 else 0.0,
        "ttfc_s": startups[0] if startups else startup_open_s,
        "decode_s": decode_s,
        "chunks_decoded": chunks_decoded,
        "cpu_s": float(res.get("cpu_s", float("nan"))),
        "peak_rss_mb": float(res.get("peak_rss_mb", float("nan"))),
    }
