"""``dashlet``: swipe-aware preloading in the style of Dashlet (NSDI'24).

What, in which order: every chunk of the window not yet downloaded or in flight gets a
risk (``_common.chunk_risks``): the watch-time pmfs of the videos on screen and ahead are
convolved into each video's start-time distribution (the current one is conditioned on
what has been watched), and a chunk's risk is ``sum over t < horizon_s of (horizon_s - t)
* P(chunk needed at t)``, t in seconds from now, where "needed" means its video is on
screen and the user still watches when the chunk starts. Chunks with risk above
``risk_threshold`` are the candidates; the riskiest is fetched first (ties: feed order,
then chunk order). With no candidate, Wait(``idle_wait_s``): chunks too unlikely or too far
ahead are left for later decisions, which is how Dashlet saves bytes.

Bitrate: throughput-based: target = ``horizon_s`` * the player's throughput estimate /
(number of candidates * chunk_s), i.e. the link's bits over the horizon shared among the
candidate chunks, halved inside the danger zone (the current video has less than
``danger_s`` seconds downloaded ahead of the playhead and is not fully downloaded); the
highest pixel rung at or below the target is fetched (the lowest if none fits).

Difference from the paper: Dashlet used 5-s chunks; the catalogs here use 1-s chunks
(``chunk_s`` of the manifest), so the candidate count, and the per-chunk target, are on a
finer grid. Start times ignore stalls. Pixel representations only (a video with none falls
back to its cheapest representation).
"""

from __future__ import annotations

from dataclasses import dataclass

from players.schedulers import _common as cm
from players.schedulers.base import Action, Download, Observation, Scheduler, Wait, register


@dataclass(frozen=True)
class DashletParams:
    """horizon_s: look-ahead of the risk sum and of the bitrate budget (25). risk_threshold:
    minimum risk of a candidate chunk (1.0: e.g. a chunk surely needed 24 s from now, or one
    needed now with probability 1/25). danger_s: buffer below which the target bitrate is
    halved (5). idle_wait_s: Wait when there is no candidate (0.5)."""

    horizon_s: float = 25.0
    risk_threshold: float = 1.0
    danger_s: float = 5.0
    idle_wait_s: float = 0.5

    def __post_init__(self) -> None:
        n = "dashlet"
        cm.need(self.horizon_s > 0, n, "horizon_s", "> 0", self.horizon_s)
        cm.need(self.risk_threshold >= 0, n, "risk_threshold", ">= 0", self.risk_threshold)
        cm.need(self.danger_s >= 0, n, "danger_s", ">= 0", self.danger_s)
        cm.need(self.idle_wait_s > 0, n, "idle_wait_s", "> 0", self.idle_wait_s)


@register
class Dashlet(Scheduler):
    name = "dashlet"
    Params = DashletParams

    def candidates(self, obs: Observation) -> list[tuple[float, int, int]]:
        """[(risk, position, chunk)] of the chunks worth fetching now, riskiest first."""
        out = []
        for (pos, c), risk in cm.chunk_risks(obs, self.params.horizon_s).items():
            if risk > self.params.risk_threshold and not cm.is_fetched(obs, obs.video(pos), c):
                out.append((risk, pos, c))
        out.sort(key=lambda x: (-x[0], x[1], x[2]))
        return out

    def decide(self, obs: Observation) -> Action:
        p = self.params
        if obs.free_slots <= 0:
            return Wait(p.idle_wait_s)
        cands = self.candidates(obs)
        if not cands:
            return Wait(p.idle_wait_s)
        _, pos, c = cands[0]
        v = obs.video(pos)
        target_bps = p.horizon_s * obs.throughput_bps / (len(cands) * v.chunk_s)
        cur = obs.videos[0]
        if (cm.downloaded_ahead_s(obs, cur) < p.danger_s
                and cm.next_missing(obs, cur) is not None):
            target_bps /= 2.0
        rep = cm.by_throughput(cm.pixel_ladder(v), target_bps)
        return Download(pos, c, rep.name)
