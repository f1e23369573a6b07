"""The results directory of one run: one layout for emulation and simulation, written and read here.

Layout (``results/<run-id>/``)::

    metadata.json                          resolved config, provenance, backend, link params,
                                           hashes, players (scheduler, player, host, trace),
                                           "complete": true|false
    events/<scheduler-label>/player<i>.jsonl     event log (players.session schema)
    resources/<scheduler-label>/player<i>.jsonl  psutil samples (emulation only)
    summary.csv                            one row per (scheduler, player): SUMMARY_COLUMNS
    links/link<k>.csv                      capacity each link replayed (t_s, capacity_mbps),
                                           for the timeline plot (optional)
    plots/*.png

Writers: ``testbed run`` (testbed/run.py) and ``testbed simulate``. A writer calls
``RunDir.create`` first (metadata with ``complete: false``), lets the players write their
logs under ``events_path``/``resources_path``, then ``write_summary`` and
``mark_complete``. An interrupted run stays ``complete: false`` and keeps its files.
Readers (``testbed compare``, plots) use ``open_run`` and never touch a live system.

Resource samples: one JSON object a line, the schema of ``players.resources`` (``t_s``,
``cpu_s`` cumulative, ``rss_mb``, ``net``...); ``resource_totals`` turns them into the
summary's ``cpu_s`` / ``peak_rss_mb``.
"""

from __future__ import annotations

import csv
import json
import os
import re
import secrets
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from players.accounting import SUMMARY_FIELDS, QoEWeights, read_events, summarize

SUMMARY_COLUMNS = ("run_id", "scheduler", "player", "trace", "backend") + SUMMARY_FIELDS
METADATA = "metadata.json"
SUMMARY = "summary.csv"
_PLAYER_FILE = re.compile(r"^player(\d+)\.jsonl$")
_LABEL_OK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


class ResultsError(ValueError):
    """A run directory that is missing or malformed; the message names the file."""


def new_run_id(name: str = "run", now: float | None = None) -> str:
    """``<name>-<YYYYmmdd-HHMMSS>-<4 hex>``: sortable by time, unique across quick reruns."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now if now is not None else time.time()))
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "run"
    return f"{slug}-{stamp}-{secrets.token_hex(2)}"


def check_label(label: str) -> str:
    """A scheduler label becomes a folder name: letters, digits and ``._+-`` only."""
    if not _LABEL_OK.match(label):
        raise ResultsError(f"scheduler label {label!r}: use letters, digits and ._+- only")
    return label


def _write_json_atomic(path: Path, obj: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(obj, fh, indent=2, sort_keys=True, allow_nan=True)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def resource_totals(samples: Iterable[Mapping]) -> dict:
    """{"cpu_s", "peak_rss_mb"} from psutil samples (``players.resources.totals``, the one
    reduction of the sampler's log); NaN when there are none."""
    from players.resources import totals

    t = totals(samples)
    return {"cpu_s": t["cpu_s"], "peak_rss_mb": t["peak_rss_mb"]}


def _read_jsonl(path: Path) -> list[dict]:
    out = []
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            line = line.strip()
            if not line:
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                # A crashed writer can leave a torn last line; anything else is corruption.
                if not fh.readline():
                    break
                raise ResultsError(f"{path}:{n}: not a JSON object ({exc.msg})") from None
            if not isinstance(rec, dict):
                raise ResultsError(f"{path}:{n}: expected a JSON object")
            out.append(rec)
    return out


def _num(text: str) -> Any:
    """A CSV cell back to int or float where it is one ("nan" included)."""
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    return text


@dataclass(frozen=True)
class RunDir:
    """One run's directory. ``path``: the folder (``<root>/<run-id>``)."""

    path: Path

    # -- writing ------------------------------------------------------------------------

    @classmethod
    def create(cls, root: str | os.PathLike, run_id: str, metadata: Mapping) -> RunDir:
        """Make ``<root>/<run_id>`` and write metadata with ``complete: false``.
        Refuses an existing folder so no earlier run is overwritten."""
        path = Path(root) / run_id
        try:
            path.mkdir(parents=True, exist_ok=False)
        except FileExistsError:
            raise ResultsError(f"{path}: already exists; pick another run id or --out") from None
        for sub in ("events", "resources", "plots"):
            (path / sub).mkdir()
        rd = cls(path)
        meta = dict(metadata)
        meta.setdefault("run_id", run_id)
        meta["complete"] = False
        meta.setdefault("started_at", time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        _write_json_atomic(path / METADATA, meta)
        return rd

    @property
    def run_id(self) -> str:
        return self.metadata().get("run_id", self.path.name)

    def events_path(self, label: str, player: int) -> Path:
        d = self.path / "events" / check_label(label)
        d.mkdir(parents=True, exist_ok=True)
        return d / f"player{int(player)}.jsonl"

    def resources_path(self, label: str, player: int) -> Path:
        d = self.path / "resources" / check_label(label)
        d.mkdir(parents=True, exist_ok=True)
        return d / f"player{int(player)}.jsonl"

    @property
    def plots_dir(self) -> Path:
        d = self.path / "plots"
        d.mkdir(exist_ok=True)
        return d

    def write_link_trace(self, link: int, times_s, rates_mbps, end_s: float) -> Path:
        """The capacity link ``link`` replayed: one row per step, plus the end time."""
        d = self.path / "links"
        d.mkdir(exist_ok=True)
        p = d / f"link{int(link)}.csv"
        with open(p, "w", encoding="utf-8", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["t_s", "capacity_mbps"])
            for t, r in zip(times_s, rates_mbps):
                w.writerow([f"{float(t):.6f}", f"{float(r):.6f}"])
            w.writerow([f"{float(end_s):.6f}", f"{float(rates_mbps[-1]):.6f}"])
        return p

    def update_metadata(self, **fields: Any) -> dict:
        """Merge top-level fields into metadata.json (atomically) and return the result."""
        meta = self.metadata()
        meta.update(fields)
        _write_json_atomic(self.path / METADATA, meta)
        return meta

    def mark_complete(self, complete: bool = True, reason: str = "") -> None:
        fields: dict[str, Any] = {"complete": bool(complete),
                                  "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        if reason:
            fields["incomplete_reason"] = reason
        self.update_metadata(**fields)

    def write_summary(self, rows: Iterable[Mapping] | None = None) -> Path:
        """Write summary.csv; with no rows, compute them from the logs (``summary_rows``)."""
        rows = list(self.compute_summary() if rows is None else rows)
        tmp = self.path / f".{SUMMARY}.tmp"
        with open(tmp, "w", encoding="utf-8", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(SUMMARY_COLUMNS), extrasaction="ignore")
            w.writeheader()
            for r in rows:
                w.writerow({k: r.get(k, "") for k in SUMMARY_COLUMNS})
        os.replace(tmp, self.path / SUMMARY)
        return self.path / SUMMARY

    # -- reading ------------------------------------------------------------------------

    def metadata(self) -> dict:
        p = self.path / METADATA
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ResultsError(f"{p}: cannot read ({exc.strerror})") from None
        except json.JSONDecodeError as exc:
            raise ResultsError(f"{p}: not valid JSON ({exc.msg})") from None
        if not isinstance(data, dict):
            raise ResultsError(f"{p}: expected a JSON object")
        return data

    def labels(self) -> list[str]:
        """Scheduler labels: the metadata's order, then any extra folder under events/."""
        meta = self.metadata()
        order = [str(x) for x in meta.get("schedulers", [])]
        ev = self.path / "events"
        found = sorted(p.name for p in ev.iterdir() if p.is_dir()) if ev.is_dir() else []
        return [x for x in order if x in found] + [x for x in found if x not in order]

    def players(self, label: str) -> list[int]:
        d = self.path / "events" / label
        if not d.is_dir():
            return []
        return sorted(int(m.group(1)) for p in d.iterdir() if (m := _PLAYER_FILE.match(p.name)))

    def events(self, label: str, player: int) -> list[dict]:
        p = self.path / "events" / label / f"player{player}.jsonl"
        try:
            return read_events(p)
        except OSError as exc:
            raise ResultsError(f"{p}: cannot read ({exc.strerror})") from None
        except ValueError as exc:
            # A torn last line of a killed player: keep what is whole.
            recs = _read_jsonl(p)
            if all("event" in r and "t_s" in r for r in recs):
                return recs
            raise ResultsError(str(exc)) from None

    def resources(self, label: str, player: int) -> list[dict]:
        p = self.path / "resources" / label / f"player{player}.jsonl"
        return _read_jsonl(p) if p.exists() else []

    def link_trace(self, link: int) -> tuple[list[float], list[float]] | None:
        """(t_s, capacity_mbps) of a link as written by ``write_link_trace``; None if absent."""
        p = self.path / "links" / f"link{int(link)}.csv"
        if not p.exists():
            return None
        ts, rs = [], []
        with open(p, encoding="utf-8", newline="") as fh:
            for n, row in enumerate(csv.reader(fh)):
                if n == 0:
                    continue
                try:
                    ts.append(float(row[0]))
                    rs.append(float(row[1]))
                except (ValueError, IndexError):
                    raise ResultsError(f"{p}:{n + 1}: expected t_s,capacity_mbps") from None
        return ts, rs

    def player_info(self, label: str, player: int) -> dict:
        """The metadata's record of one player (host, trace, ...); {} when absent."""
        for rec in self.metadata().get("players", []):
            if rec.get("scheduler") == label and int(rec.get("player", -1)) == player:
                return rec
        return {}

    def weights(self) -> QoEWeights:
        q = (self.metadata().get("config") or {}).get("qoe") or {}
        return QoEWeights(**{k: float(v) for k, v in q.items()
                             if k in ("mu", "lam", "download", "startup") and v is not None})

    def compute_summary(self) -> list[dict]:
        """One row per (scheduler, player) from the event and resource logs."""
        meta = self.metadata()
        weights = self.weights()
        rows = []
        for label in self.labels():
            for i in self.players(label):
                info = self.player_info(label, i)
                s = summarize(self.events(label, i), weights,
                              resource_totals(self.resources(label, i)))
                rows.append({"run_id": meta.get("run_id", self.path.name), "scheduler": label,
                             "player": i, "trace": info.get("trace", ""),
                             "backend": meta.get("backend", ""), **s})
        return rows

    def summary_rows(self) -> list[dict]:
        """summary.csv as dicts with numbers parsed; computed from the logs if it is missing."""
        p = self.path / SUMMARY
        if not p.exists():
            return self.compute_summary()
        with open(p, encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh)
            missing = [c for c in ("scheduler", "player") if c not in (reader.fieldnames or [])]
            if missing:
                raise ResultsError(f"{p}: missing column(s) {missing}")
            rows = []
            for r in reader:
                rows.append({k: (v if k in ("run_id", "scheduler", "trace", "backend") else _num(v))
                             for k, v in r.items()})
        return rows


def open_run(path: str | os.PathLike) -> RunDir:
    """A run directory for reading; a clear error when it is not one."""
    p = Path(path)
    if not p.is_dir():
        raise ResultsError(f"{p}: not a directory")
    if not (p / METADATA).exists():
        raise ResultsError(f"{p}: no {METADATA}; not a run directory (results/<run-id>/)")
    rd = RunDir(p)
    rd.metadata()
    return rd
