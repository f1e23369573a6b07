"""Named emulation topologies as pure data, one module each, plus the registry that names them.

A topology module defines ``build(n_players) -> Topology`` (see ``topologies.spec``).
``get_topology`` takes a registry name (``access``, ``shared``, ``edge``) or the dotted path
of a user module (``mypkg.mytopo``) or function (``mypkg.mytopo:build``).
"""

from __future__ import annotations

import importlib

from topologies.spec import HostSpec, LinkSpec, Topology, TopologyError

TOPOLOGIES = {
    "access": "topologies.access",
    "shared": "topologies.shared",
    "edge": "topologies.edge",
}

__all__ = ["TOPOLOGIES", "HostSpec", "LinkSpec", "Topology", "TopologyError", "get_topology"]


def _resolve(name: str):
    if name in TOPOLOGIES:
        return importlib.import_module(TOPOLOGIES[name]).build
    if "." not in name and ":" not in name:
        raise TopologyError(f"unknown topology {name!r} (expected one of "
                            f"{', '.join(sorted(TOPOLOGIES))}, or a dotted path "
                            f"'package.module' / 'package.module:function')")
    mod_name, _, attr = name.partition(":")
    try:
        mod = importlib.import_module(mod_name)
    except ImportError as exc:
        raise TopologyError(f"topology {name!r}: cannot import {mod_name!r}: {exc}") from exc
    fn = getattr(mod, attr or "build", None)
    if not callable(fn):
        raise TopologyError(f"topology {name!r}: {mod_name} has no callable "
                            f"{attr or 'build'!r} (expected build(n_players) -> Topology)")
    return fn


def get_topology(name: str | Topology, n_players: int) -> Topology:
    """The topology ``name`` built for ``n_players`` player hosts (a Topology passes through)."""
    if isinstance(name, Topology):
        return name
    if n_players < 1:
        raise TopologyError(f"topology {name!r}: n_players must be >= 1, got {n_players}")
    topo = _resolve(name)(n_players)
    if not isinstance(topo, Topology):
        raise TopologyError(f"topology {name!r}: build() returned {type(topo).__name__}, "
                            f"expected topologies.spec.Topology")
    return topo
