"""``edge``: players near an edge host; the origin far away behind a WAN link with delay.

    origin --- s0 --WAN (delay WAN_DELAY_MS)-- s1 ==trace k==> p(k+1)
                                               s1 --- edge

The WAN link is not rate-shaped; its delay needs netem (where the kernel lacks it, the run
says so and records requested vs applied delay). Player access links are shaped as in
``access``.
"""

from topologies.spec import HostSpec, LinkSpec, Topology

WAN_DELAY_MS = 20.0


def build(n_players: int) -> Topology:
    """n_players: player hosts, each with access link k replaying link trace k."""
    players = [f"p{k + 1}" for k in range(n_players)]
    hosts = (HostSpec("origin", "origin"), HostSpec("edge", "edge"),
             *(HostSpec(p, "player") for p in players))
    links = (LinkSpec("s0", "origin"), LinkSpec("s0", "s1", delay_ms=WAN_DELAY_MS),
             LinkSpec("s1", "edge"),
             *(LinkSpec("s1", p, trace=k, direction="down") for k, p in enumerate(players)))
    return Topology("edge", hosts, ("s0", "s1"), links)
