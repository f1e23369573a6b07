"""``no-preload``: fetch the current video only; never touch the next ones.

What, in which order: the current video's chunks in playback order, from the playhead on,
until it is fully fetched or ``max_buffer_s`` content seconds are downloaded or in flight
ahead of the playhead; then Wait. The next video starts downloading only when it comes on
screen (its startup delay is the price of saving every preload byte).

Bitrate: buffer-based (``_common.by_buffer``) on the current video's downloaded seconds
ahead of the playhead: lowest rung up to ``low_buffer_s``, top rung above
``high_buffer_s``, rungs in between spread evenly. Pixel representations only (a video
with none falls back to its cheapest representation).
"""

from __future__ import annotations

from dataclasses import dataclass

from players.schedulers import _common as cm
from players.schedulers.base import Action, Download, Observation, Scheduler, Wait, register


@dataclass(frozen=True)
class NoPreloadParams:
    """max_buffer_s: stop fetching when this many content seconds are committed ahead of
    the playhead (10). low_buffer_s / high_buffer_s: buffer-based bitrate thresholds (1, 3).
    idle_wait_s: Wait when nothing is to be fetched (0.5; the player caps it at its
    decide interval)."""

    max_buffer_s: float = 10.0
    low_buffer_s: float = 1.0
    high_buffer_s: float = 3.0
    idle_wait_s: float = 0.5

    def __post_init__(self) -> None:
        n = "no-preload"
        cm.need(self.max_buffer_s > 0, n, "max_buffer_s", "> 0", self.max_buffer_s)
        cm.need(0 <= self.low_buffer_s < self.high_buffer_s, n, "low_buffer_s/high_buffer_s",
                "0 <= low < high", (self.low_buffer_s, self.high_buffer_s))
        cm.need(self.idle_wait_s > 0, n, "idle_wait_s", "> 0", self.idle_wait_s)


@register
class NoPreload(Scheduler):
    name = "no-preload"
    Params = NoPreloadParams

    def decide(self, obs: Observation) -> Action:
        p = self.params
        idle = Wait(p.idle_wait_s)
        if obs.free_slots <= 0:
            return idle
        v = obs.videos[0]
        if cm.fetched_ahead_s(obs, v) >= p.max_buffer_s:
            return idle
        c = cm.next_missing(obs, v)
        if c is None:
            return idle
        rep = cm.by_buffer(cm.pixel_ladder(v), cm.downloaded_ahead_s(obs, v),
                           p.low_buffer_s, p.high_buffer_s)
        return Download(v.position, c, rep.name)
