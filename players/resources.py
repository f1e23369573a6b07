"""The psutil sampler: what one player process costs, sampled at a fixed interval.

Each sample (one JSON line, flushed) is::

    {"t_s", "cpu_s", "rss_bytes", "rss_mb", "threads", "net": {nic: {"rx_bytes", "tx_bytes"}},
     "sampler_cpu_s"}

t_s: session seconds (the caller's clock). cpu_s: user + system CPU seconds of the process
since it started (all its threads: decode workers included). rss_*: resident memory.
net: ``psutil.net_io_counters(pernic=True)`` as seen from the process, i.e. the interfaces
of the network namespace it runs in (its Mininet host's, or the machine's on loopback).
sampler_cpu_s: CPU seconds the sampler thread itself used so far -- its overhead.

The sampler runs on its own thread so a busy event loop does not skew the interval; the
first sample is taken at start and a last one at stop.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import IO

import psutil


def _net() -> dict:
    return {nic: {"rx_bytes": c.bytes_recv, "tx_bytes": c.bytes_sent}
            for nic, c in psutil.net_io_counters(pernic=True).items()}


class ResourceSampler:
    """path: JSON-lines output (None: keep samples in memory only). interval_s: period (s).
    clock: session clock (s). pid: process to watch (default: this one)."""

    def __init__(self, path: str | os.PathLike | None, interval_s: float = 1.0,
                 clock: Callable[[], float] | None = None, pid: int | None = None) -> None:
        if not (interval_s > 0 and math.isfinite(interval_s)):
            raise ValueError(f"sample_interval_s: expected > 0, got {interval_s}")
        self.path = path
        self.interval_s = interval_s
        self.clock = clock or time.monotonic
        self.proc = psutil.Process(pid)
        self.samples: list[dict] = []
        self._fh: IO[str] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._sampler_cpu_s = 0.0
        self._lock = threading.Lock()

    def sample(self) -> dict:
        """Take one sample now (also written to the file)."""
        t_cpu = time.thread_time()
        with self.proc.oneshot():
            cpu = self.proc.cpu_times()
            rss = self.proc.memory_info().rss
            threads = self.proc.num_threads()
        rec = {"t_s": round(self.clock(), 6), "cpu_s": cpu.user + cpu.system,
               "rss_bytes": rss, "rss_mb": rss / 2**20, "threads": threads, "net": _net()}
        with self._lock:
            self._sampler_cpu_s += time.thread_time() - t_cpu
            rec["sampler_cpu_s"] = self._sampler_cpu_s
            self.samples.append(rec)
            if self._fh is not None:
                self._fh.write(json.dumps(rec) + "\n")
                self._fh.flush()
        return rec

    def start(self) -> ResourceSampler:
        if self.path is not None:
            self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 -- closed in stop()
        self.sample()
        self._thread = threading.Thread(target=self._run, name="resource-sampler", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        next_t = time.monotonic() + self.interval_s
        while not self._stop.wait(max(0.0, next_t - time.monotonic())):
            self.sample()
            next_t += self.interval_s

    def stop(self) -> dict:
        """Stop sampling, take a last sample, close the file; returns ``totals()``."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
            self.sample()
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        return self.totals()

    def totals(self) -> dict:
        return totals(self.samples)


def totals(samples: Iterable[Mapping]) -> dict:
    """{"cpu_s", "peak_rss_mb", "sampler_cpu_s", "samples", "net_delta": {nic: {rx, tx}}}:
    the last CPU reading, the peak RSS, the sampler's own CPU, and interface bytes between
    the first and the last sample."""
    samples = list(samples)
    if not samples:
        return {"cpu_s": float("nan"), "peak_rss_mb": float("nan"), "sampler_cpu_s": 0.0,
                "samples": 0, "net_delta": {}}
    first, last = samples[0], samples[-1]
    delta = {}
    for nic, c in last.get("net", {}).items():
        f = first.get("net", {}).get(nic)
        if f is not None:
            delta[nic] = {"rx_bytes": c["rx_bytes"] - f["rx_bytes"],
                          "tx_bytes": c["tx_bytes"] - f["tx_bytes"]}
    return {"cpu_s": float(last["cpu_s"]),
            "peak_rss_mb": max(float(s["rss_mb"]) for s in samples),
            "sampler_cpu_s": float(last.get("sampler_cpu_s", 0.0)),
            "samples": len(samples), "net_delta": delta}
