"""Topology registry and descriptions (pure data, no root)."""

import pytest

from topologies import TOPOLOGIES, HostSpec, LinkSpec, Topology, TopologyError, get_topology


def tiny(n_players):
    """A user topology loaded by dotted path in the tests below."""
    return Topology("tiny", (HostSpec("o", "origin"), HostSpec("x", "player")), (),
                    (LinkSpec("o", "x", trace=0),))


@pytest.mark.parametrize("name", sorted(TOPOLOGIES))
@pytest.mark.parametrize("n", [1, 3])
def test_registered_topologies_are_consistent(name, n):
    t = get_topology(name, n)
    assert len(t.players) == n
    assert t.origin in t.host_names
    for p in t.players:
        path = t.path(t.origin, p)
        assert path[0] == t.origin and path[-1] == p
        assert t.player_link(p) is not None, f"{name}: {p} has no shaped link on its path"


def test_access_gives_each_player_its_own_trace():
    t = get_topology("access", 4)
    assert [t.player_link(p).trace for p in t.players] == [0, 1, 2, 3]
    assert t.trace_count() == 4
    assert not any(link.shaped for link in t.links_of("origin"))


def test_shared_has_one_bottleneck_for_all_players():
    t = get_topology("shared", 3)
    assert len(t.shaped_links) == 1
    assert {t.player_link(p) for p in t.players} == {t.shaped_links[0]}
    assert t.trace_count() == 1


def test_edge_has_wan_delay_and_an_edge_host():
    t = get_topology("edge", 2)
    assert any(h.role == "edge" for h in t.hosts)
    wan = [link for link in t.links if link.delay_ms > 0]
    assert len(wan) == 1 and not wan[0].shaped
    assert wan[0] in [link for link in t.links
                      if {link.a, link.b} <= set(t.path(t.origin, t.players[0]))]


def test_dotted_path_user_topology():
    t = get_topology("test_topologies:tiny", 1)
    assert t.name == "tiny" and t.players == ("x",)


def test_unknown_name_lists_valid_ones():
    with pytest.raises(TopologyError, match="access, edge, shared"):
        get_topology("nosuch", 2)
    with pytest.raises(TopologyError, match="cannot import"):
        get_topology("no_such_module_xyz.topo", 2)
    with pytest.raises(TopologyError, match="no callable"):
        get_topology("test_topologies:missing", 2)


@pytest.mark.parametrize("hosts,links,match", [
    ((HostSpec("o", "origin"),), (), "at least one host with role 'player'"),
    ((HostSpec("o", "origin"), HostSpec("p", "player")), (), "no path"),
    ((HostSpec("o", "origin"), HostSpec("p", "player")), (LinkSpec("o", "zz"),),
     "two different known nodes"),
    ((HostSpec("O!", "origin"), HostSpec("p", "player")), (), "node name"),
    ((HostSpec("o", "origin"), HostSpec("p", "player")),
     (LinkSpec("o", "p", trace=0, direction="sideways"),), "direction"),
    ((HostSpec("o", "origin"), HostSpec("p", "player")),
     (LinkSpec("o", "p", loss_pct=-1.0),), r"loss_pct -1.0: expected a number in \[0, 100\)"),
])
def test_bad_topologies_are_rejected(hosts, links, match):
    with pytest.raises(TopologyError, match=match):
        Topology("bad", hosts, (), links)
