"""``challenge-fixed``: the ACM MM'22 short-video challenge's "fixed preload" baseline.

What, in which order: first the whole current video, in order (the challenge's baseline
downloads the playing video to its end before preloading anything; there is no buffer
cap). Then the next videos of the window in feed order: the next missing chunk k of a video
is preloaded while k < ``preload_chunks`` and the video's conditional retention at chunk k,
P(still watching at k * chunk_s | watched up to where it plays from), exceeds
``retention_threshold``; a video that fails either test is skipped and the next one
considered. With nothing to fetch, Wait(``idle_wait_s``) (the challenge's TAU = 500 ms).

Retention comes from the video's watch pmf (``VideoView.prob_reaching_s``); for a video
not yet on screen the condition is on second 0, i.e. the plain retention curve, as in the
challenge where a preloaded video's play chunk is 0.

Bitrate: buffer-based on the downloaded seconds of the video being fetched, ahead of where
it plays from: the lowest rung up to 1 s, the top rung above 2 s (the challenge's 1000 /
2000 ms thresholds, exact for its three-rung ladder; rungs between are spread over
(1, 2] s on longer ladders). Pixel representations only (a video with none falls back to
its cheapest representation).
"""

from __future__ import annotations

from dataclasses import dataclass

from players.schedulers import _common as cm
from players.schedulers.base import (
    Action,
    Download,
    Observation,
    Scheduler,
    VideoView,
    Wait,
    register,
)


@dataclass(frozen=True)
class ChallengeFixedParams:
    """preload_chunks: most chunks preloaded per next video (4). retention_threshold:
    preload a chunk only while the conditional retention exceeds it (0.65).
    low_buffer_s / high_buffer_s: bitrate thresholds (1.0, 2.0). idle_wait_s: sleep when
    idle (0.5)."""

    preload_chunks: int = 4
    retention_threshold: float = 0.65
    low_buffer_s: float = 1.0
    high_buffer_s: float = 2.0
    idle_wait_s: float = 0.5

    def __post_init__(self) -> None:
        n = "challenge-fixed"
        cm.need(isinstance(self.preload_chunks, int) and self.preload_chunks >= 0, n,
                "preload_chunks", "an integer >= 0", self.preload_chunks)
        cm.need(0 <= self.retention_threshold <= 1, n, "retention_threshold", "0..1",
                self.retention_threshold)
        cm.need(0 <= self.low_buffer_s < self.high_buffer_s, n, "low_buffer_s/high_buffer_s",
                "0 <= low < high", (self.low_buffer_s, self.high_buffer_s))
        cm.need(self.idle_wait_s > 0, n, "idle_wait_s", "> 0", self.idle_wait_s)


def conditional_retention(obs: Observation, v: VideoView, chunk: int) -> float:
    """P(the user is still watching when ``chunk`` of ``v`` starts | watched up to where
    ``v`` plays from now)."""
    base = v.prob_reaching_s(cm.start_s(obs, v))
    if base <= 0:
        return 0.0
    return min(v.prob_reaching_s(chunk * v.chunk_s) / base, 1.0)


@register
class ChallengeFixed(Scheduler):
    name = "challenge-fixed"
    Params = ChallengeFixedParams

    def decide(self, obs: Observation) -> Action:
        p = self.params
        if obs.free_slots <= 0:
            return Wait(p.idle_wait_s)
        cur = obs.videos[0]
        c = cm.next_missing(obs, cur)
        if c is not None:
            return self._fetch(obs, cur, c)
        for v in cm.later_videos(obs):
            c = cm.next_missing(obs, v, p.preload_chunks)
            if c is not None and conditional_retention(obs, v, c) > p.retention_threshold:
                return self._fetch(obs, v, c)
        return Wait(p.idle_wait_s)

    def _fetch(self, obs: Observation, v: VideoView, c: int) -> Download:
        p = self.params
        rep = cm.by_buffer(cm.pixel_ladder(v), cm.downloaded_ahead_s(obs, v),
                           p.low_buffer_s, p.high_buffer_s)
        return Download(v.position, c, rep.name)
