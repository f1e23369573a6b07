"""The topology description: hosts, switches and links as frozen data, no Mininet.

A backend turns a ``Topology`` into namespaces and interfaces (``testbed.emulation``).
Node names here are generic (``origin``, ``p1``, ``s0``); backends prefix them with the run
id. Link ends: ``a`` is the side nearer the origin, ``b`` the side nearer the players, so
``direction="down"`` shapes traffic flowing from ``a`` to ``b`` (origin -> player).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

ROLES = ("origin", "player", "edge", "other")
DIRECTIONS = ("down", "up", "both")
NAME_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789")


class TopologyError(ValueError):
    """A topology description that cannot be built; the message names the part."""


@dataclass(frozen=True)
class HostSpec:
    """name: generic node name (lowercase letters/digits, at most 12 characters; backends
    derive short device names from positions, not from this name).
    role: ``origin`` | ``player`` | ``edge`` | ``other``."""

    name: str
    role: Literal["origin", "player", "edge", "other"] = "other"


@dataclass(frozen=True)
class LinkSpec:
    """One point-to-point link between two nodes (hosts or switches).

    trace: index into the run's link traces when this link is shaped, else None.
    direction: which direction the trace shapes (``down`` = a -> b).
    delay_ms: one-way delay this topology asks for on the link (applied where netem exists).
    loss_pct: random loss (%) this topology asks for on the link (applied where netem exists).
    """

    a: str
    b: str
    trace: int | None = None
    direction: Literal["down", "up", "both"] = "down"
    delay_ms: float = 0.0
    loss_pct: float = 0.0

    @property
    def shaped(self) -> bool:
        return self.trace is not None


@dataclass(frozen=True)
class Topology:
    """hosts, switches (names) and links; ``players`` lists player hosts in link order."""

    name: str
    hosts: tuple[HostSpec, ...]
    switches: tuple[str, ...]
    links: tuple[LinkSpec, ...]
    meta: dict = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        self.validate()

    @property
    def origin(self) -> str:
        return next(h.name for h in self.hosts if h.role == "origin")

    @property
    def players(self) -> tuple[str, ...]:
        return tuple(h.name for h in self.hosts if h.role == "player")

    @property
    def host_names(self) -> tuple[str, ...]:
        return tuple(h.name for h in self.hosts)

    @property
    def shaped_links(self) -> tuple[LinkSpec, ...]:
        return tuple(link for link in self.links if link.shaped)

    def links_of(self, node: str) -> tuple[LinkSpec, ...]:
        return tuple(link for link in self.links if node in (link.a, link.b))

    def player_link(self, player: str) -> LinkSpec | None:
        """The shaped link on the path from the origin to ``player`` (None if unshaped)."""
        path = self.path(self.origin, player)
        for a, b in zip(path, path[1:]):
            for link in self.links:
                if {link.a, link.b} == {a, b} and link.shaped:
                    return link
        return None

    def path(self, src: str, dst: str) -> list[str]:
        """Node names on the (first found, breadth-first) path from ``src`` to ``dst``."""
        prev: dict[str, str | None] = {src: None}
        frontier = [src]
        while frontier:
            nxt = []
            for n in frontier:
                for link in self.links_of(n):
                    m = link.b if link.a == n else link.a
                    if m not in prev:
                        prev[m] = n
                        nxt.append(m)
            frontier = nxt
        if dst not in prev:
            raise TopologyError(f"topology {self.name!r}: no path from {src} to {dst}")
        out = [dst]
        while prev[out[-1]] is not None:
            out.append(prev[out[-1]])
        return out[::-1]

    def validate(self) -> None:
        where = f"topology {self.name!r}"
        names = [h.name for h in self.hosts] + list(self.switches)
        if len(set(names)) != len(names):
            raise TopologyError(f"{where}: duplicate node names in {names}")
        for n in names:
            if not n or len(n) > 12 or not set(n) <= NAME_CHARS or not n[0].isalpha():
                raise TopologyError(f"{where}: node name {n!r}: expected 1-12 lowercase "
                                    f"letters/digits starting with a letter")
        for h in self.hosts:
            if h.role not in ROLES:
                raise TopologyError(f"{where}: host {h.name}: role {h.role!r} not in {ROLES}")
        if sum(h.role == "origin" for h in self.hosts) != 1:
            raise TopologyError(f"{where}: expected exactly one host with role 'origin'")
        if not self.players:
            raise TopologyError(f"{where}: expected at least one host with role 'player'")
        known = set(names)
        for i, link in enumerate(self.links):
            if link.a not in known or link.b not in known or link.a == link.b:
                raise TopologyError(f"{where}: link {i} ({link.a}-{link.b}): ends must be "
                                    f"two different known nodes")
            if link.direction not in DIRECTIONS:
                raise TopologyError(f"{where}: link {link.a}-{link.b}: direction "
                                    f"{link.direction!r} not in {DIRECTIONS}")
            if link.trace is not None and link.trace < 0:
                raise TopologyError(f"{where}: link {link.a}-{link.b}: trace index < 0")
            if link.delay_ms < 0:
                raise TopologyError(f"{where}: link {link.a}-{link.b}: delay_ms < 0")
            if not 0 <= link.loss_pct < 100:
                raise TopologyError(f"{where}: link {link.a}-{link.b}: loss_pct "
                                    f"{link.loss_pct!r}: expected a number in [0, 100)")
        for p in self.players:
            self.path(self.origin, p)

    def trace_count(self) -> int:
        """How many link traces the shaped links refer to (max index + 1)."""
        return max((link.trace for link in self.shaped_links), default=-1) + 1

    def to_dict(self) -> dict:
        return {"name": self.name, "hosts": [[h.name, h.role] for h in self.hosts],
                "switches": list(self.switches),
                "links": [{"a": x.a, "b": x.b, "trace": x.trace, "direction": x.direction,
                           "delay_ms": x.delay_ms, "loss_pct": x.loss_pct}
                          for x in self.links]}
