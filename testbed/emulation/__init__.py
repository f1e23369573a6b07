"""Emulation backends: build a topology, shape its links by replaying traces, own and
remove everything they create.

``open_backend(kind, topology, link_traces, link_options, run_id, workdir)`` returns a
context manager (see docs/links.md for the full API); ``cleanup_owned(owned_json)`` removes
what a crashed run left behind.
"""

from __future__ import annotations

import os

from testbed.emulation.lifecycle import NetInterrupted
from testbed.emulation.options import BackendError, LinkOptions
from testbed.emulation.owned import cleanup_owned

BACKENDS = ("auto", "mininet", "userspace")

__all__ = ["BACKENDS", "BackendError", "LinkOptions", "NetInterrupted", "cleanup_owned",
           "open_backend", "resolve_backend"]


def resolve_backend(kind: str) -> str:
    """``auto`` -> ``mininet`` when it can run here (root, Linux, tools), else ``userspace``."""
    from testbed.emulation.mininet_backend import mininet_available

    if kind not in BACKENDS:
        raise BackendError(f"backend {kind!r}: expected one of {', '.join(BACKENDS)}")
    if kind == "auto":
        return "mininet" if mininet_available() is None else "userspace"
    return kind


def open_backend(kind: str, topology, link_traces: list, link_options: dict | None,
                 run_id: str, workdir: str | os.PathLike, n_players: int | None = None):
    """An emulated network as a context manager (nothing is built until ``with``).

    kind: ``auto`` | ``mininet`` | ``userspace``. topology: registry name, dotted path or a
    ``topologies.Topology``. link_traces: ``traces.Trace`` per shaped link (link k replays
    trace k). link_options: ``LinkOptions`` fields as a dict. run_id: 1-7 lowercase
    letters/digits, put into every device name. workdir: where owned.json and tc logs go.
    n_players: player hosts (default: one per link trace).
    """
    from testbed.emulation.mininet_backend import MininetNet
    from testbed.emulation.userspace import UserspaceNet
    from topologies import TopologyError, get_topology

    opts = LinkOptions.from_mapping(link_options)
    try:
        topo = get_topology(topology, n_players or len(link_traces))
    except TopologyError as exc:
        raise BackendError(str(exc)) from exc
    cls = MininetNet if resolve_backend(kind) == "mininet" else UserspaceNet
    return cls(topo, link_traces, opts, run_id, workdir)
