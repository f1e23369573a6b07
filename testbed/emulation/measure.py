"""Measure one shaped link against its trace: a saturating flow through the backend,
"wire" bytes sampled at the shaper, goodput counted by the receiver, per-second errors.

Used by bench/link_fidelity.py and the root tests (one helper, one way to measure).
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

import numpy as np

from testbed.emulation.owned import stop_pid  # noqa: F401  (re-exported for callers)


def per_second(bins: list[int], bin_s: float) -> np.ndarray:
    """Sum equal bins into whole seconds (bytes per second)."""
    per = int(round(1 / bin_s))
    a = np.asarray(bins, dtype=np.float64)
    n = len(a) // per
    return a[: n * per].reshape(n, per).sum(axis=1)


def trace_bytes_per_second(trace, n_s: int) -> np.ndarray:
    """Capacity of ``trace`` in bytes for each second from its start (looping)."""
    t = trace.start_s
    return np.array([trace.bits_between(t + i, t + i + 1) / 8 for i in range(n_s)])


def errors(measured: np.ndarray, target: np.ndarray, min_target: float = 1.0) -> dict:
    """MAPE (%) and bias (%) of per-second ``measured`` vs ``target`` (seconds where the
    target is below ``min_target`` bytes are left out of MAPE)."""
    m = target >= min_target
    if not np.any(m):
        return {"mape_pct": float("nan"), "bias_pct": float("nan")}
    mape = float(np.mean(np.abs(measured[m] - target[m]) / target[m]) * 100)
    bias = float((measured[m].sum() - target[m].sum()) / target[m].sum() * 100)
    return {"mape_pct": mape, "bias_pct": bias}


class WireSampler(threading.Thread):
    """Samples a shaped port's cumulative tx bytes every ``period_s`` on a grid anchored at
    ``t0`` (time.monotonic()), so that whole seconds from t0 fall on a sample: interpolating
    between samples 50 ms apart moved up to 50 ms of a fast second's bytes into a thin
    neighbour (13 frames at 3 Mbit/s, against one in the thin second)."""

    def __init__(self, read, period_s: float = 0.05, t0: float | None = None):
        super().__init__(name="wire-sampler", daemon=True)
        self.read = read
        self.period_s = period_s
        self.t0 = time.monotonic() if t0 is None else t0
        self.samples: list[tuple[float, int]] = []
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            self.samples.append((time.monotonic(), self.read()))
            k = np.floor((time.monotonic() - self.t0) / self.period_s + 1e-9) + 1
            self._halt.wait(max(self.t0 + k * self.period_s - time.monotonic(), 0.0))

    def stop(self) -> None:
        self._halt.set()
        self.join(2)

    def per_second(self, t0: float, n_s: int) -> np.ndarray:
        t = np.array([s[0] for s in self.samples]) - t0
        b = np.array([s[1] for s in self.samples], dtype=np.float64)
        edges = np.interp(np.arange(n_s + 1), t, b)
        return np.diff(edges)


def _start_server(net, port: int | None, cc: str | None):
    """The flow server on the origin host; returns (process, congestion control used)."""
    import subprocess

    ip, oport = net.origin_bind(net.origin_host)
    argv = [sys.executable, "-m", "testbed.emulation.flow", "serve", "--host", ip,
            "--port", str(port or oport)]
    srv = net.popen(net.origin_host, argv + (["--cc", cc] if cc else []),
                    stdout=subprocess.PIPE)
    line = srv.stdout.readline()
    if b"listening" not in line:
        raise RuntimeError(f"flow server did not start: {line!r}")
    return srv, json.loads(line).get("cc")


def measure_link(net, host: str, trace, duration_s: float, workdir: Path,
                 warmup_s: float = 1.0, port: int | None = None, lead_s: float = 1.0,
                 cc: str | None = None) -> dict:
    """Run one saturating flow origin -> ``host`` for ``duration_s`` with the replay started
    now; returns per-second wire/goodput/trace bytes and their errors.

    The flow connects ``lead_s`` before the replay's t0 (the link is already shaped at the
    trace's first rate), and the first ``warmup_s`` seconds are left out of the errors.
    cc: the sender's TCP congestion control (None: the system's; the result names it)."""
    _srv, cc_used = _start_server(net, port, cc)
    url = net.origin_url(host)
    chost, cport = url.split("//", 1)[1].rsplit(":", 1)
    dev = next(p["dev"] for p in net.shaped_ports()
               if p["trace_index"] == net.topology.player_link(host).trace)
    out = Path(workdir) / f"flow-{host}.json"
    t0 = time.monotonic() + lead_s
    net.start_replay(t0)
    sampler = WireSampler(lambda: net.port_tx_bytes(dev), 0.05, t0)
    sampler.start()
    cli = net.popen(host, [sys.executable, "-m", "testbed.emulation.flow", "recv", "--host",
                           chost, "--port", cport, "--t0", repr(t0), "--duration-s",
                           str(duration_s), "--out", str(out)])
    rc = cli.wait(duration_s + 30)
    sampler.stop()
    if rc != 0 or not out.exists():
        raise RuntimeError(f"flow receiver on {host} failed (exit {rc})")
    d = json.loads(out.read_text())
    n = int(duration_s)
    goodput = per_second(d["bytes"], d["bin_s"])[:n]
    wire = sampler.per_second(t0, n)
    target = trace_bytes_per_second(trace, n)
    factor = next(x.get("rate_factor", 1.0) for x in net.applied_link_params()["links"]
                  if x["dev"] == dev)
    w = int(warmup_s)
    return {"seconds": n, "goodput_Bps": goodput.tolist(), "wire_Bps": wire.tolist(),
            "trace_Bps": target.tolist(), "rate_factor": factor, "cc": cc_used,
            "goodput": errors(goodput[w:], target[w:]),
            "wire": errors(wire[w:], target[w:] * factor),
            "mean_trace_mbps": float(target.mean() * 8 / 1e6)}


def measure_links(net, traces: list, duration_s: float, workdir: Path, warmup_s: float = 2.0,
                  lead_s: float = 1.5, cc: str | None = None) -> list[dict]:
    """One saturating flow per player host at once (player k on link trace k); returns one
    result per player as ``measure_link`` does."""
    _srv, cc_used = _start_server(net, None, cc)
    ports = {p["trace_index"]: p["dev"] for p in net.shaped_ports()}
    hosts = list(net.player_hosts)
    t0 = time.monotonic() + lead_s
    net.start_replay(t0)
    samplers = {}
    for h in hosts:
        dev = ports[net.topology.player_link(h).trace]
        samplers[h] = WireSampler(lambda dev=dev: net.port_tx_bytes(dev), 0.05, t0)
        samplers[h].start()
    procs = {}
    for h in hosts:
        chost, cport = net.origin_url(h).split("//", 1)[1].rsplit(":", 1)
        procs[h] = net.popen(h, [sys.executable, "-m", "testbed.emulation.flow", "recv",
                                 "--host", chost, "--port", cport, "--t0", repr(t0),
                                 "--duration-s", str(duration_s),
                                 "--out", str(Path(workdir) / f"flow-{h}.json")])
    rcs = {h: p.wait(duration_s + lead_s + 60) for h, p in procs.items()}
    for s in samplers.values():
        s.stop()
    params = {x["dev"]: x for x in net.applied_link_params()["links"]}
    out, n, w = [], int(duration_s), int(warmup_s)
    for h in hosts:
        f = Path(workdir) / f"flow-{h}.json"
        if rcs[h] != 0 or not f.exists():
            raise RuntimeError(f"flow receiver on {h} failed (exit {rcs[h]})")
        d = json.loads(f.read_text())
        goodput = per_second(d["bytes"], d["bin_s"])[:n]
        wire = samplers[h].per_second(t0, n)
        trace = traces[net.topology.player_link(h).trace]
        target = trace_bytes_per_second(trace, n)
        factor = params[ports[net.topology.player_link(h).trace]].get("rate_factor", 1.0)
        out.append({"host": h, "trace": trace.name, "seconds": n,
                    "mean_trace_mbps": float(target.mean() * 8 / 1e6),
                    "goodput": errors(goodput[w:], target[w:]),
                    "wire": errors(wire[w:], target[w:] * factor),
                    "goodput_Bps": goodput.tolist(), "wire_Bps": wire.tolist(),
                    "trace_Bps": target.tolist(), "rate_factor": factor, "cc": cc_used})
    return out
