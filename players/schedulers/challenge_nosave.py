"""``challenge-nosave``: the ACM MM'22 short-video challenge's "no save" baseline:
RobustMPC bitrate choice and a fixed ~800 KB preload per next video, repeated in rounds.

What, in which order: first the whole current video, in order. Then the next videos of the
window in rounds of ``preload_bytes``: in round r a video is topped up (one chunk per
decision, in chunk order) until r * ``preload_bytes`` of it are downloaded or in flight;
the earliest video in feed order still short of the current round goes first, and a new
round starts once every video with chunks left has reached the current one. As in the
challenge, rounds go on until the window is fully fetched (nothing is saved), unless
``max_rounds`` > 0 stops them. With nothing to fetch, Wait(``idle_wait_s``).

Bitrate: RobustMPC over the next ``horizon`` chunks of the video being fetched: every rung
sequence is scored ``sum q - mu * rebuffer_s - switch_weight * sum |dq|`` (q = nominal
bitrate in Mbps, the challenge's QoE) with the buffer (downloaded seconds ahead of where the
video plays from) drained by each chunk's download time at the predicted throughput and
refilled by ``chunk_s``; the first rung of the best sequence is fetched. The predicted
throughput is the harmonic mean of the last 5 per-download rates (``on_chunk_done``:
bytes / seconds) divided by 1 + the largest relative prediction error of the last 5; before
any sample it is the player's own estimate (``obs.throughput_bps``). When ladder^horizon
exceeds ``MAX_SEQUENCES`` the horizon is shortened so one decision stays in milliseconds.
Pixel representations only (a video with none falls back to its cheapest representation).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from players.schedulers import _common as cm
from players.schedulers.base import (
    Action,
    Download,
    Observation,
    RepInfo,
    Scheduler,
    VideoView,
    Wait,
    register,
)

MAX_SEQUENCES = 4096


@dataclass(frozen=True)
class ChallengeNoSaveParams:
    """horizon: MPC look-ahead in chunks (5). preload_bytes: preload per next video and
    round (800000 B, the challenge's PRELOAD_SIZE). max_rounds: stop preloading after this
    many rounds (0: never, as in the challenge). mu: penalty per rebuffer second (1.85).
    switch_weight: penalty per Mbps of bitrate change (1.0). idle_wait_s: sleep when idle
    (0.5)."""

    horizon: int = 5
    preload_bytes: int = 800_000
    max_rounds: int = 0
    mu: float = 1.85
    switch_weight: float = 1.0
    idle_wait_s: float = 0.5

    def __post_init__(self) -> None:
        n = "challenge-nosave"
        cm.need(isinstance(self.horizon, int) and self.horizon >= 1, n, "horizon",
                "an integer >= 1", self.horizon)
        cm.need(isinstance(self.preload_bytes, int) and self.preload_bytes > 0, n,
                "preload_bytes", "an integer > 0", self.preload_bytes)
        cm.need(isinstance(self.max_rounds, int) and self.max_rounds >= 0, n, "max_rounds",
                "an integer >= 0", self.max_rounds)
        cm.need(self.mu >= 0, n, "mu", ">= 0", self.mu)
        cm.need(self.switch_weight >= 0, n, "switch_weight", ">= 0", self.switch_weight)
        cm.need(self.idle_wait_s > 0, n, "idle_wait_s", "> 0", self.idle_wait_s)


def mpc_choice(ladder: tuple[RepInfo, ...], first_chunk: int, n_chunks: int, chunk_s: float,
               buffer_s: float, last_index: int, throughput_bps: float, horizon: int,
               mu: float, switch_weight: float) -> int:
    """Index into ``ladder`` of the rung RobustMPC picks for ``first_chunk``."""
    steps = max(1, min(horizon, n_chunks - first_chunk))
    while len(ladder) ** steps > MAX_SEQUENCES and steps > 1:
        steps -= 1
    bps = max(throughput_bps, 1.0)
    q = [r.bitrate_kbps / 1000.0 for r in ladder]
    dl_s = [[r.chunk_bytes[first_chunk + i] * 8.0 / bps for i in range(steps)] for r in ladder]
    best, best_score = 0, float("-inf")
    for seq in itertools.product(range(len(ladder)), repeat=steps):
        buf, rebuf, score, last = buffer_s, 0.0, 0.0, last_index
        for i, lvl in enumerate(seq):
            t = dl_s[lvl][i]
            if t > buf:
                rebuf += t - buf
                buf = 0.0
            else:
                buf -= t
            buf += chunk_s
            score += q[lvl] - switch_weight * abs(q[lvl] - q[last])
            last = lvl
        score -= mu * rebuf
        if score > best_score:
            best, best_score = seq[0], score
    return best


@register
class ChallengeNoSave(Scheduler):
    name = "challenge-nosave"
    Params = ChallengeNoSaveParams

    def __init__(self, params=None, seed: int = 0) -> None:
        super().__init__(params, seed)
        self.tput = cm.RobustThroughput(5)

    def on_chunk_done(self, obs: Observation, position: int, chunk: int, bytes_: int,
                      seconds: float) -> None:
        if seconds > 0:
            self.tput.add(bytes_ * 8.0 / seconds)

    def decide(self, obs: Observation) -> Action:
        p = self.params
        if obs.free_slots <= 0:
            return Wait(p.idle_wait_s)
        cur = obs.videos[0]
        c = cm.next_missing(obs, cur)
        if c is not None:
            return self._fetch(obs, cur, c)
        best = None  # (round needed, feed order) of the video to top up
        for v in cm.later_videos(obs):
            c = cm.next_missing(obs, v)
            if c is None:
                continue
            rnd = cm.fetched_bytes(obs, v) // p.preload_bytes + 1
            if p.max_rounds and rnd > p.max_rounds:
                continue
            if best is None or rnd < best[0]:
                best = (rnd, v, c)
        if best is None:
            return Wait(p.idle_wait_s)
        return self._fetch(obs, best[1], best[2])

    def _fetch(self, obs: Observation, v: VideoView, c: int) -> Download:
        p = self.params
        ladder = cm.pixel_ladder(v)
        last = 0
        prev = v.downloaded.get(c - 1)
        for i, r in enumerate(ladder):
            if r.name == prev:
                last = i
        i = mpc_choice(ladder, c, v.n_chunks, v.chunk_s, cm.downloaded_ahead_s(obs, v), last,
                       self.tput.predict(obs.throughput_bps), p.horizon, p.mu,
                       p.switch_weight)
        return Download(v.position, c, ladder[i].name)
