"""``shared``: all players behind one shaped bottleneck (they compete for its capacity).

    origin --- s0 ==trace 0==> s1 --- p1..pN

Only link trace 0 is used; the bottleneck is the link between the two switches.
"""

from topologies.spec import HostSpec, LinkSpec, Topology


def build(n_players: int) -> Topology:
    """n_players: player hosts sharing the bottleneck that replays link trace 0."""
    players = [f"p{k + 1}" for k in range(n_players)]
    hosts = (HostSpec("origin", "origin"), *(HostSpec(p, "player") for p in players))
    links = (LinkSpec("s0", "origin"), LinkSpec("s0", "s1", trace=0, direction="down"),
             *(LinkSpec("s1", p) for p in players))
    return Topology("shared", hosts, ("s0", "s1"), links)
