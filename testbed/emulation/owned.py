"""What a run created, recorded as it is created (``owned.json``), and its removal.

Every resource (host shell, bridge, veth, qdisc, process, in-process thread or relay) is
appended to the ledger *before or as* it is created and the file is rewritten atomically,
so a crashed run can be cleaned up from the file alone (``cleanup_owned``). Removal goes in
reverse order of creation and touches only the recorded names and PIDs; a PID is signalled
only when its process start time still matches the recorded one (no PID reuse accidents).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil

TERM_DEADLINE_S = 3.0


def process_start_time(pid: int) -> float | None:
    """psutil's create_time of ``pid`` (s since the epoch), None if it does not exist."""
    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
        return None


def _same_process(rec: dict) -> bool:
    t = process_start_time(int(rec["pid"]))
    return t is not None and abs(t - float(rec.get("start_time", t))) < 0.05


def stop_pid(pid: int, start_time: float | None, group: bool, first_signal=signal.SIGTERM,
             deadline_s: float = TERM_DEADLINE_S) -> bool:
    """Signal a recorded process (its group when ``group``), wait, then SIGKILL.

    Returns True when it is gone. Does nothing if the PID now names another process."""
    rec = {"pid": pid, "start_time": start_time} if start_time is not None else {"pid": pid}
    if not _same_process(rec):
        return True

    def send(sig):
        try:
            if group:
                os.killpg(pid, sig)
            else:
                os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    send(first_signal)
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        try:
            p = psutil.Process(pid)
            if p.status() == psutil.STATUS_ZOMBIE:
                _reap(pid)
                return True
        except psutil.NoSuchProcess:
            return True
        _reap(pid)
        time.sleep(0.02)
    send(signal.SIGKILL)
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        _reap(pid)
        if process_start_time(pid) is None:
            return True
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                _reap(pid)
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.02)
    return False


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def link_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


def delete_link(name: str) -> None:
    """Delete a network device in the root namespace if it still exists."""
    if link_exists(name):
        r = subprocess.run(["ip", "link", "del", name], capture_output=True, text=True)
        if r.returncode != 0 and link_exists(name):
            raise RuntimeError(f"ip link del {name}: {r.stderr.strip()}")


def _remove_record(rec: dict) -> None:
    """Remove one recorded resource using only the record (also after a crash)."""
    kind = rec["kind"]
    if kind in ("process", "host", "tc_batch"):
        stop_pid(int(rec["pid"]), rec.get("start_time"), bool(rec.get("group", False)),
                 signal.SIGHUP if kind == "host" else signal.SIGTERM)
    elif kind in ("link", "bridge", "probe"):
        delete_link(rec["name"])
    elif kind == "qdisc":
        # Root-namespace qdiscs only; host-side ones vanish with their namespace.
        if rec.get("ns") is None and link_exists(rec["dev"]):
            subprocess.run(["tc", "qdisc", "del", "dev", rec["dev"], "root"],
                           capture_output=True)
    elif kind in ("thread", "relay", "dir"):
        pass  # in-process: gone with the process that owned it
    else:
        raise ValueError(f"owned.json: unknown resource kind {kind!r}")


class Ledger:
    """The run's list of owned resources, mirrored to ``path`` after every change."""

    def __init__(self, path: str | os.PathLike, run_id: str):
        self.path = Path(path)
        self.run_id = run_id
        self.entries: list[dict] = []
        self._live: dict[int, Callable[[], None]] = {}
        self.errors: list[str] = []
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._write()

    def add(self, kind: str, remove: Callable[[], None] | None = None, **fields) -> int:
        """Record a resource; ``remove`` (optional) undoes it in this process, otherwise the
        record-based removal is used. Returns the entry index."""
        rec = {"kind": kind, "state": "live", **fields}
        self.entries.append(rec)
        idx = len(self.entries) - 1
        if remove is not None:
            self._live[idx] = remove
        self._write()
        return idx

    def teardown(self) -> list[str]:
        """Remove every live resource in reverse order; returns the error messages (each
        failure is reported on stderr and in the file; the rest is still removed)."""
        for idx in range(len(self.entries) - 1, -1, -1):
            rec = self.entries[idx]
            if rec["state"] != "live":
                continue
            try:
                fn = self._live.pop(idx, None)
                if fn is not None:
                    fn()
                else:
                    _remove_record(rec)
                rec["state"] = "removed"
            except Exception as exc:  # keep removing the rest; report each failure
                rec["state"] = "failed"
                msg = f"{rec['kind']} {rec.get('name') or rec.get('pid') or ''}: {exc}"
                self.errors.append(msg)
                print(f"emulation: cleanup failed: {msg}", file=sys.stderr)
            self._write()
        return list(self.errors)

    def _write(self) -> None:
        data = {"run_id": self.run_id, "owner_pid": os.getpid(),
                "owner_start_time": process_start_time(os.getpid()),
                "entries": self.entries, "errors": self.errors}
        tmp = self.path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(data, indent=1))
        os.replace(tmp, self.path)


def cleanup_owned(path: str | os.PathLike, force: bool = False) -> list[str]:
    """Remove what a (crashed) run recorded in ``path`` (its owned.json), newest first.

    Refuses while the owning process is still alive unless ``force``. Returns a list of the
    resources removed (``kind name``); raises ValueError on a file that is not a ledger."""
    p = Path(path)
    try:
        data = json.loads(p.read_text())
        entries = data["entries"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{p}: not a readable owned.json ({exc})") from exc
    owner = {"pid": data.get("owner_pid", -1), "start_time": data.get("owner_start_time")}
    if not force and owner["pid"] != os.getpid() and owner["start_time"] is not None \
            and _same_process(owner):
        raise ValueError(f"{p}: run {data.get('run_id')} is still running (pid "
                         f"{owner['pid']}); stop it first or pass force")
    done = []
    for rec in reversed(entries):
        if rec.get("state") == "removed":
            continue
        _remove_record(rec)
        rec["state"] = "removed"
        done.append(f"{rec['kind']} {rec.get('name') or rec.get('dev') or rec.get('pid')}")
    data["entries"] = entries
    data["cleaned_by"] = os.getpid()
    tmp = p.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, p)
    return done
