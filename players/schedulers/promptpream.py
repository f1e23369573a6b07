"""``promptpream``: computation-aware preloading by Monte-Carlo tree search (PromptPream).

Each decision searches sequences of the next ``depth`` downloads; an action is (chunk,
representation, device), over the whole window and in any order across videos (chunk k+1
of a later video may go before chunk k of an earlier one). The root also has ``Wait``.

- Candidates and pruning: ``_costmodel`` (the same model as ``greedy-compute``): the first
  missing chunk of each window video x its representations x decode devices, cut by the
  retention horizon, device dominance, the playout deadline and pixel-vs-prompt dominance.
  Below the root the candidates follow the plan: a planned chunk is no longer missing,
  devices and the link are busy with the plan.
- Plan timing: the first download shares the link with the downloads in flight (processor
  sharing estimate), later ones follow once the link is free; each decode starts when its
  download is done and its device is free (devices work in parallel).
- Rollout: one sampled user per iteration (watch time of every window video from its pmf,
  the current one conditioned on the playhead, uniform within the second; drawn from the
  scheduler's seeded ``rng``), then playback over ``horizon_s``: chunks planned, in flight,
  downloaded or decoded play when they are ready; any other chunk is fetched by a default
  continuation (lowest pixel representation, in order, from when its video comes on
  screen). Reward = played quality - mu * stall - lam * switches - waste_weight * Mbit of
  planned chunks the sampled user never plays - download_weight * planned Mbit; planned
  chunks played beyond the horizon earn their quality above the default's.
- Selection: UCB1 on rewards normalised by the range seen so far. Every node below the
  root has a "stop" child (the plan ends, the default continuation goes on), tried first,
  so a branch is never judged worse than its own prefix. The k-th evaluation of any node
  uses sampled user k (common random numbers). The answer is the root child of highest
  value, a node's value being its best visited child's (max backup) or, at a leaf, its mean
  reward (ties: more visits, then candidate order).
- Budget: at most ``max_iterations`` iterations; with ``time_budget = true`` also at most
  ``budget_ms`` of wall time for the whole call (the search stops when two iterations of
  the mean length so far and a 0.3-ms reserve would end past it). By default only the
  iteration count limits the search, so a decision depends on the observation and the
  seed only (bit-identical reruns).
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass

from players.schedulers._costmodel import Candidate, Context, CostParams, prune
from players.schedulers.base import Action, Download, Observation, Scheduler, Wait, register


@dataclass
class _Node:
    action: object  # Candidate or None (Wait)
    children: list | None = None
    visits: int = 0
    total: float = 0.0
    value: float = -math.inf  # _value(node), kept up to date along each backed-up path


@dataclass
class _Planned:
    index: int
    chunk: int
    ready_s: float
    quality: float
    mbit: float


class _Plan:
    """The state of a partial plan: link and device availability, planned chunks."""

    def __init__(self, link_s: float, dev_s: dict, planned: tuple = ()) -> None:
        self.link_s = link_s
        self.dev_s = dev_s
        self.planned = planned

    def keys(self) -> frozenset:
        return frozenset((p.index, p.chunk) for p in self.planned)

    def add(self, ctx: Context, c: Candidate, first: bool) -> _Plan:
        bits = c.rep.chunk_bytes[c.chunk] * 8.0
        if first:
            dl = ctx.download_s(c.rep.chunk_bytes[c.chunk])
            link = ctx.backlog_s() + bits / ctx.rate_bps
            start = max(dl, ctx.device_free_s(c.device, c.position, c.chunk))
        else:
            dl = self.link_s + bits / ctx.rate_bps
            link = dl
            start = max(dl, self.dev_s.get(c.device, 0.0))
        ready = start + c.rep.decode_s.get(c.device, 0.0)
        dev = dict(self.dev_s)
        dev[c.device] = max(dev.get(c.device, 0.0), ready)
        return _Plan(link, dev, self.planned + (_Planned(c.index, c.chunk, ready, c.quality,
                                                         c.mbit),))


_STOP = object()  # below the root: plan no further downloads
_RESERVE_S = 0.0003  # time budget: kept for the work after the search loop (s)


def _value(n: _Node) -> float:
    """A node's value: its best visited child's (the plan may stop anywhere), or its own
    mean reward at a leaf. Reads the children's stored values: call it on a backed-up
    path from the leaf up (only the nodes on it change), so it costs O(children)."""
    kids = [ch.value for ch in (n.children or ()) if ch.visits]
    if not kids:
        return n.total / n.visits if n.visits else -math.inf
    return max(kids)


def _best(cands: list[Candidate], k: int) -> list[Candidate]:
    """The ``k`` candidates worth fetching with the best scores (stable order)."""
    worth = [c for c in cands if c.worth > 0]
    return sorted(worth, key=lambda c: -c.score)[:k]


@register
class PromptPream(Scheduler):
    name = "promptpream"

    @dataclass(frozen=True)
    class Params(CostParams):
        """The cost model's parameters (``_costmodel.CostParams``) plus the search:
        depth: downloads planned per sequence. max_iterations: search iterations per
        decision. budget_ms: wall-time budget per decision, used only when time_budget is
        true. exploration: UCB1 constant. wait_s: length of the root's Wait action.
        root_actions / child_actions: candidates kept at the root / below it, best
        cost-model score first (progressive widening). users: sampled users per decision,
        shared by all iterations (common random numbers: branches are compared on the
        same users)."""

        depth: int = 3
        max_iterations: int = 64
        budget_ms: float = 20.0
        time_budget: bool = False
        exploration: float = 0.7
        wait_s: float = 0.25
        root_actions: int = 8
        child_actions: int = 4
        users: int = 8

        def __post_init__(self) -> None:
            self.check("promptpream")
            for name, ok, what in (
                ("depth", self.depth >= 1, ">= 1"),
                ("max_iterations", self.max_iterations >= 1, ">= 1"),
                ("budget_ms", self.budget_ms > 0, "> 0"),
                ("exploration", self.exploration >= 0, ">= 0"),
                ("wait_s", self.wait_s > 0, "> 0"),
                ("root_actions", self.root_actions >= 1, ">= 1"),
                ("child_actions", self.child_actions >= 1, ">= 1"),
                ("users", self.users >= 1, ">= 1"),
            ):
                if not ok:
                    raise ValueError(f"scheduler 'promptpream': {name}: expected {what}, "
                                     f"got {getattr(self, name)!r}")

    def __init__(self, params=None, seed: int = 0) -> None:
        super().__init__(params, seed)
        self.last_iterations = 0
        self._device_of: dict[tuple[int, int], str] = {}  # decode device we asked for

    # ------------------------------------------------------------------ decide
    def decide(self, obs: Observation) -> Action:
        t_start = time.perf_counter()  # the time budget covers the whole call
        pr = self.params
        if obs.free_slots <= 0:
            return Wait(pr.wait_s)
        cost = CostParams(**{f.name: getattr(pr, f.name)
                             for f in dataclasses.fields(CostParams)})
        ctx = Context(obs, cost)
        root_cands = _best(prune(ctx, ctx.candidates()), pr.root_actions)
        self.last_iterations = 0
        if not root_cands:
            return Wait(pr.wait_s)
        if len(root_cands) == 1 and root_cands[0].ready_s <= root_cands[0].deadline_s:
            return self._download(root_cands[0])  # one on-time choice: nothing to search
        root = _Node(None, [_Node(c) for c in root_cands] + [_Node(None)])
        self._known = self._known_ready(ctx)
        self._low = []  # the default continuation's representation per video
        for v in ctx.videos:
            low = next((r for r in v.representations if r.kind == "pixel"),
                       v.representations[0])
            self._low.append((low, min(low.decode_s.values(), default=0.0)))
        self._users = [[self._sample_watch(ctx, i) for i in range(len(ctx.videos))]
                       for _ in range(pr.users)]
        base = _Plan(ctx.backlog_s(), {d.name: ctx.device_backlog_s(d.name)
                                        for d in obs.devices})
        lo, hi = math.inf, -math.inf
        deadline = t_start + pr.budget_ms / 1000.0 if pr.time_budget else math.inf
        t_loop = time.perf_counter()
        for it in range(pr.max_iterations):
            # stop before an iteration would end past the deadline (two of the mean length
            # so far, as rollouts vary, plus a reserve for the answer and dropping the
            # tree), so that the whole call, not just the loop, keeps to budget_ms
            if it > 0 and pr.time_budget:
                now = time.perf_counter()
                if now + 2.0 * (now - t_loop) / it + _RESERVE_S > deadline:
                    break
            path = [root]
            node = root
            plan = base
            depth = 0
            # selection / expansion
            while True:
                if node.children is None:
                    # "stop": the plan ends here and the default continuation goes on, so
                    # a branch is never worse than its own prefix
                    node.children = [_Node(_STOP)] + [_Node(c) for c in self._expand(ctx, plan)]
                if not node.children:
                    break
                untried = [ch for ch in node.children if ch.visits == 0]
                if untried:
                    child = untried[0]
                else:
                    span = (hi - lo) if hi > lo else 1.0
                    logn = math.log(node.visits)
                    child = max(node.children, key=lambda ch: (
                        (ch.total / ch.visits - lo) / span
                        + pr.exploration * math.sqrt(logn / ch.visits)))
                path.append(child)
                node = child
                if child.action is None:  # Wait: the link idles, then the default goes on
                    node.children = []
                    plan = _Plan(plan.link_s + pr.wait_s, plan.dev_s, plan.planned)
                    break
                if child.action is _STOP:
                    node.children = []
                    break
                plan = plan.add(ctx, child.action, first=depth == 0)
                depth += 1
                if depth >= pr.depth or child.visits == 0:
                    if depth >= pr.depth:
                        node.children = []
                    break
            # common random numbers: the k-th evaluation of any node meets user k
            reward = self._rollout(ctx, plan, self._users[path[-1].visits % pr.users])
            lo, hi = min(lo, reward), max(hi, reward)
            for n in path:
                n.visits += 1
                n.total += reward
            for n in reversed(path):
                n.value = _value(n)
            self.last_iterations = it + 1
        self.last_root = [(ch.action, ch.visits, ch.value) for ch in root.children]
        order = {id(ch): k for k, ch in enumerate(root.children)}
        best = max((ch for ch in root.children if ch.visits), key=lambda ch: (
            ch.value, ch.visits, -order[id(ch)]))
        if best.action is None:
            return Wait(pr.wait_s)
        return self._download(best.action)

    def _download(self, c: Candidate) -> Download:
        if len(self._device_of) > 4096:  # forget downloads long done
            self._device_of = {k: v for k, v in self._device_of.items()
                               if k[0] >= c.position - 8}
        self._device_of[(c.position, c.chunk)] = c.device
        return Download(c.position, c.chunk, c.rep.name, c.device)

    # ------------------------------------------------------------------ tree
    def _expand(self, ctx: Context, plan: _Plan) -> list[Candidate]:
        """Candidates after ``plan``: the next missing chunk of each window video given
        the plan, timed after it, pruned."""
        skip = plan.keys()
        out = []
        for i, v in enumerate(ctx.videos):
            missing = ctx.missing_chunks(i, skip, limit=1)
            if not missing:
                continue
            c = missing[0]
            for rep in v.representations:
                for dev in ctx.devices_for(rep):
                    dl = plan.link_s + rep.chunk_bytes[c] * 8.0 / ctx.rate_bps
                    ready = max(dl, plan.dev_s.get(dev, 0.0)) + rep.decode_s.get(dev, 0.0)
                    out.append(ctx.candidate(i, c, rep, dev, ready))
        return _best(prune(ctx, out), self.params.child_actions)

    # ------------------------------------------------------------------ rollout
    def _known_ready(self, ctx: Context) -> dict:
        """Ready time (s from now) of chunks already decoded, downloaded or in flight."""
        obs = ctx.obs
        known = {}
        flights = {(f.position, f.chunk): f for f in obs.in_flight}
        for i, v in enumerate(ctx.videos):
            for c in v.decoded:
                name = v.downloaded.get(c)
                known[(i, c)] = (0.0, ctx.quality(v.rep(name), c) if name else 0.0)
            for c, name in v.downloaded.items():
                if c in v.decoded:
                    continue
                rep = v.rep(name)
                dev = next((d.name for d in obs.devices if (v.position, c) in d.queued),
                           ctx.devices_for(rep)[0])
                ready = ctx.device_free_s(dev, v.position, c) + rep.decode_s.get(dev, 0.0)
                known[(i, c)] = (ready, ctx.quality(rep, c))
            for c in range(v.n_chunks):
                f = flights.get((v.position, c))
                if f is None:
                    continue
                rep = v.rep(f.representation)
                dev = self._device_of.get((v.position, c)) or ctx.devices_for(rep)[0]
                dl = ctx.download_s(max(f.bytes_total - f.bytes_done, 0)) \
                    if f.bytes_total > f.bytes_done else 0.0
                ready = max(dl, ctx.device_free_s(dev, v.position, c)) + rep.decode_s.get(dev, 0.0)
                known[(i, c)] = (ready, ctx.quality(rep, c))
        return known

    def _sample_watch(self, ctx: Context, i: int) -> float:
        """A watch time (content s) of window video ``i``, given what was watched."""
        v = ctx.videos[i]
        base = ctx.base[i]
        n = len(v.watch_pmf) - 1
        weights = []
        for j, pj in enumerate(v.watch_pmf):
            hi = v.duration_s if j == n else min(j + 1.0, v.duration_s)
            weights.append(pj if hi > base and pj > 0 else 0.0)
        total = sum(weights)
        if total <= 0:
            return v.duration_s
        u = self.rng.random() * total
        for j, w in enumerate(weights):
            u -= w
            if u <= 0 or j == n:
                if j == n:
                    return v.duration_s
                lo = max(float(j), base)
                hi = min(j + 1.0, v.duration_s)
                return lo + self.rng.random() * max(hi - lo, 0.0)
        return v.duration_s

    def _rollout(self, ctx: Context, plan: _Plan, watch: list[float]) -> float:
        p = ctx.p
        planned = {(x.index, x.chunk): x for x in plan.planned}
        known = self._known
        horizon = p.horizon_s
        t = 0.0
        cursor = plan.link_s
        stall = quality = switch = 0.0
        wasted_mbit = 0.0
        credited = set()
        for i, v in enumerate(ctx.videos):
            w = watch[i]
            for (pi, pc), x in planned.items():
                if pi == i and pc * v.chunk_s >= w:
                    wasted_mbit += x.mbit
            low, low_dec = self._low[i]
            video_on = t
            prev_q = None
            c = ctx.first[i]
            while c < v.n_chunks and c * v.chunk_s < w and t < horizon:
                x = planned.get((i, c))
                if x is not None:
                    ready, q = x.ready_s, x.quality
                    credited.add((i, c))
                elif (i, c) in known:
                    ready, q = known[(i, c)]
                else:
                    cursor = max(cursor, video_on) + low.chunk_bytes[c] * 8.0 / ctx.rate_bps
                    ready = cursor + low_dec
                    q = ctx.quality(low, c)
                if ready > t:
                    stall += ready - t
                    t = ready
                seg = min((c + 1) * v.chunk_s, w, v.duration_s) - max(c * v.chunk_s, ctx.base[i])
                seg = max(seg, 0.0)
                quality += q * seg / v.chunk_s
                if prev_q is not None:
                    switch += abs(q - prev_q)
                prev_q = q
                t += seg
                c += 1
            # planned chunks this user plays after the horizon: their gain over the default
            for (pi, pc), x in planned.items():
                if pi == i and (pi, pc) not in credited and pc * v.chunk_s < w:
                    quality += x.quality - ctx.quality(low, pc)
                    credited.add((pi, pc))
        planned_mbit = sum(x.mbit for x in plan.planned)
        return (quality - p.mu * stall - p.lam * switch - p.waste_weight * wasted_mbit
                - p.download_weight * planned_mbit)
