"""``access``: every player host has its own shaped access link; the origin sits on an
unshaped link to the same switch.

    origin --- s0 ==trace k==> p(k+1)     (shaped in the downlink direction)
"""

from topologies.spec import HostSpec, LinkSpec, Topology


def build(n_players: int) -> Topology:
    """n_players: player hosts, each with access link k replaying link trace k."""
    players = [f"p{k + 1}" for k in range(n_players)]
    hosts = (HostSpec("origin", "origin"), *(HostSpec(p, "player") for p in players))
    links = (LinkSpec("s0", "origin"),
             *(LinkSpec("s0", p, trace=k, direction="down") for k, p in enumerate(players)))
    return Topology("access", hosts, ("s0",), links)
