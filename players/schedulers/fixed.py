"""``fixed``: the common production preloader: keep a buffer of the current video, then the
first ``preload_s`` seconds of each of the next ``preload_videos`` videos, then more of the
current video.

What, in which order (the first rule that has something to fetch wins):
1. the current video, in order, until ``buffer_target_s`` content seconds are downloaded or
   in flight ahead of the playhead (or the video is fully fetched);
2. the next ``preload_videos`` videos in feed order, each up to its first ``preload_s``
   content seconds (chunks starting before ``preload_s``), in chunk order;
3. the current video again, until ``max_buffer_s`` seconds are committed ahead;
otherwise Wait(``idle_wait_s``). Swipe statistics are ignored (the "fixed" in the name).
Defaults N = 4 s and K = 4 videos follow the production-style setting in the issue.

Bitrate: buffer-based (``_common.by_buffer``) on the downloaded seconds of the video the
chunk belongs to, ahead of where that video plays from (the playhead for the current video,
0 for a preloaded one), so a preloaded video's first chunk starts on the lowest rung like a
fresh startup. Pixel representations only (a video with none falls back to its cheapest).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from players.schedulers import _common as cm
from players.schedulers.base import Action, Download, Observation, Scheduler, Wait, register


@dataclass(frozen=True)
class FixedParams:
    """preload_s: seconds preloaded of each next video (N = 4). preload_videos: how many
    next videos (K = 4; the window may show fewer). buffer_target_s: current-video buffer
    kept before preloading (4). max_buffer_s: cap on the current video's buffer (15).
    low_buffer_s / high_buffer_s: buffer-based bitrate thresholds (1, 3). idle_wait_s:
    Wait when nothing is to be fetched (0.5)."""

    preload_s: float = 4.0
    preload_videos: int = 4
    buffer_target_s: float = 4.0
    max_buffer_s: float = 15.0
    low_buffer_s: float = 1.0
    high_buffer_s: float = 3.0
    idle_wait_s: float = 0.5

    def __post_init__(self) -> None:
        n = "fixed"
        cm.need(self.preload_s >= 0, n, "preload_s", ">= 0", self.preload_s)
        cm.need(isinstance(self.preload_videos, int) and self.preload_videos >= 0, n,
                "preload_videos", "an integer >= 0", self.preload_videos)
        cm.need(self.buffer_target_s > 0, n, "buffer_target_s", "> 0", self.buffer_target_s)
        cm.need(self.max_buffer_s >= self.buffer_target_s, n, "max_buffer_s",
                ">= buffer_target_s", self.max_buffer_s)
        cm.need(0 <= self.low_buffer_s < self.high_buffer_s, n, "low_buffer_s/high_buffer_s",
                "0 <= low < high", (self.low_buffer_s, self.high_buffer_s))
        cm.need(self.idle_wait_s > 0, n, "idle_wait_s", "> 0", self.idle_wait_s)


@register
class Fixed(Scheduler):
    name = "fixed"
    Params = FixedParams

    def decide(self, obs: Observation) -> Action:
        p = self.params
        if obs.free_slots <= 0:
            return Wait(p.idle_wait_s)
        cur = obs.videos[0]
        ahead = cm.fetched_ahead_s(obs, cur)
        if ahead < p.buffer_target_s and (c := cm.next_missing(obs, cur)) is not None:
            return self._fetch(obs, cur, c)
        for v in cm.later_videos(obs, p.preload_videos):
            limit = math.ceil(p.preload_s / v.chunk_s - 1e-9)  # chunks starting before preload_s
            if (c := cm.next_missing(obs, v, limit)) is not None:
                return self._fetch(obs, v, c)
        if ahead < p.max_buffer_s and (c := cm.next_missing(obs, cur)) is not None:
            return self._fetch(obs, cur, c)
        return Wait(p.idle_wait_s)

    def _fetch(self, obs: Observation, v, c: int) -> Download:
        p = self.params
        rep = cm.by_buffer(cm.pixel_ladder(v), cm.downloaded_ahead_s(obs, v),
                           p.low_buffer_s, p.high_buffer_s)
        return Download(v.position, c, rep.name)
