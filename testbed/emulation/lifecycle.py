"""What both backends share: the owned-resource ledger, tracked processes, signal handling.

``OwnedNet`` is a context manager: ``__enter__`` builds (and tears down what it made if the
build fails), ``__exit__`` tears everything down in reverse order. While it is open, SIGTERM
and SIGHUP raise ``NetInterrupted`` (when nobody else handles them) so ``finally`` blocks and
the teardown run; SIGINT already raises KeyboardInterrupt. During teardown SIGINT, SIGTERM
and SIGHUP are ignored so a second Ctrl-C cannot leave half the run behind.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

from testbed.emulation.options import BackendError, LinkOptions
from testbed.emulation.owned import Ledger, process_start_time, stop_pid
from topologies import Topology

RUN_ID_RE = re.compile(r"^[a-z0-9]{1,7}$")


class NetInterrupted(BaseException):
    """SIGTERM/SIGHUP arrived while an emulated network was open."""


def stop_popen(proc: subprocess.Popen, deadline_s: float = 3.0) -> None:
    """SIGTERM the process group of a tracked child, wait, SIGKILL; reap it."""
    if proc.poll() is None:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(deadline_s)
                break
            except subprocess.TimeoutExpired:
                continue
    proc.wait()


class OwnedNet:
    """Base of the backends: run id, workdir, ledger, tracked ``popen``, lifecycle."""

    kind = "base"

    def __init__(self, topology: Topology, link_traces: list, options: LinkOptions,
                 run_id: str, workdir: str | os.PathLike):
        if not RUN_ID_RE.match(run_id or ""):
            raise BackendError(f"run_id {run_id!r}: expected 1-7 lowercase letters/digits "
                               f"(it goes into interface names, 15 characters at most)")
        need = topology.trace_count()
        if len(link_traces) < need:
            raise BackendError(f"topology {topology.name!r} shapes {need} link(s) but "
                               f"{len(link_traces)} link trace(s) were given")
        self.topology = topology
        self.link_traces = list(link_traces)
        self.options = options
        self.run_id = run_id
        self.workdir = Path(workdir)
        self.ledger: Ledger | None = None
        self._old_handlers: dict = {}

    # -- names -------------------------------------------------------------------------
    @property
    def host_names(self) -> tuple[str, ...]:
        return self.topology.host_names

    @property
    def player_hosts(self) -> tuple[str, ...]:
        return self.topology.players

    @property
    def origin_host(self) -> str:
        return self.topology.origin

    def _check_host(self, host: str) -> None:
        if host not in self.topology.host_names:
            raise BackendError(f"unknown host {host!r} (hosts: "
                               f"{', '.join(self.topology.host_names)})")

    # -- lifecycle ---------------------------------------------------------------------
    def __enter__(self):
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.ledger = Ledger(self.workdir / "owned.json", self.run_id)
        self._install_signals()
        try:
            self._build()
        except BaseException:
            self._teardown()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self._teardown()

    def close(self) -> None:
        self._teardown()

    def _build(self) -> None:
        raise NotImplementedError

    def _teardown(self) -> None:
        if self.ledger is None:
            return
        main = threading.current_thread() is threading.main_thread()
        saved = {}
        if main:
            for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                saved[s] = signal.signal(s, signal.SIG_IGN)
        try:
            self.ledger.teardown()
        finally:
            if main:
                for s, h in saved.items():
                    signal.signal(s, h)
            self._restore_signals()
            self.ledger = None

    def _install_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return

        def handler(signum, _frame):
            raise NetInterrupted(f"signal {signal.Signals(signum).name}")

        for s in (signal.SIGTERM, signal.SIGHUP):
            if signal.getsignal(s) in (signal.SIG_DFL, None):
                self._old_handlers[s] = signal.signal(s, handler)

    def _restore_signals(self) -> None:
        for s, h in self._old_handlers.items():
            signal.signal(s, h)
        self._old_handlers = {}

    # -- processes ---------------------------------------------------------------------
    def _spawn(self, argv: list[str], kind: str = "process", **kwargs) -> subprocess.Popen:
        """Start a tracked child in its own session (its group is stopped at teardown)."""
        assert self.ledger is not None, "network is not open"
        kwargs.setdefault("stdin", subprocess.DEVNULL)
        proc = subprocess.Popen(argv, start_new_session=True, **kwargs)
        self.ledger.add(kind, remove=lambda: stop_popen(proc), pid=proc.pid,
                        start_time=process_start_time(proc.pid), group=True,
                        argv=[str(a) for a in argv[:6]])
        return proc


def warn(msg: str) -> None:
    print(f"emulation: {msg}", file=sys.stderr, flush=True)


__all__ = ["OwnedNet", "NetInterrupted", "stop_popen", "stop_pid", "warn"]
