"""``greedy-compute``: PromptPream's cost model without the search (the ablation).

At each decision: every (chunk, representation, device) for the first missing chunk of
each window video (``_costmodel.Context.candidates``), pruned by the same rules as
``promptpream``. Of the chunks worth having (positive expected quality net of expected
waste), each gets its representation/device of best value (quality minus switch, link
drain and expected stall) and the chunk of best score (that value plus the urgency of not
deferring it) is fetched; nothing (``Wait``) when no chunk is worth it. Deterministic: no
randomness.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from players.schedulers._costmodel import Context, CostParams, prune
from players.schedulers.base import Action, Download, Observation, Scheduler, Wait, register


@register
class GreedyCompute(Scheduler):
    name = "greedy-compute"

    @dataclass(frozen=True)
    class Params(CostParams):
        """The cost model's parameters (``_costmodel.CostParams``) plus wait_s: how long to
        wait when nothing is worth fetching (s)."""

        wait_s: float = 0.25

        def __post_init__(self) -> None:
            self.check("greedy-compute")
            if not self.wait_s > 0:
                raise ValueError(f"scheduler 'greedy-compute': wait_s: expected > 0, "
                                 f"got {self.wait_s!r}")

    def decide(self, obs: Observation) -> Action:
        if obs.free_slots <= 0:
            return Wait(self.params.wait_s)
        cost = CostParams(**{f.name: getattr(self.params, f.name)
                             for f in dataclasses.fields(CostParams)})
        ctx = Context(obs, cost)
        cands = prune(ctx, ctx.candidates())
        if not cands:
            return Wait(self.params.wait_s)
        per_chunk: dict[tuple[int, int], object] = {}
        for c in cands:  # the representation/device of each chunk: best value
            if c.worth <= 0:
                continue
            k = (c.position, c.chunk)
            if k not in per_chunk or c.value > per_chunk[k].value:
                per_chunk[k] = c
        if not per_chunk:
            return Wait(self.params.wait_s)
        best = max(per_chunk.values(), key=lambda c: c.score)  # which chunk: best score
        return Download(best.position, best.chunk, best.rep.name, best.device)
