"""Pure builders of tc command lines for a trace-shaped HTB port, and the rate policy.

Nothing here runs a command. The recipe (measured on the project machines, see
docs/links.md): HTB root with one class, ``ceil`` = ``rate``, explicit ``burst`` and
``cburst``; a small explicit leaf queue (pfifo, or netem when delay is wanted and the kernel
has it); rate changes by ``class change`` (the root qdisc is never deleted mid-run).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

MTU_FRAME_BYTES = 1514          # Ethernet frame of a full-size packet (what HTB counts)
TCP_PAYLOAD_BYTES = 1448        # TCP payload of that frame (IPv4, timestamps on)
TCP_OVERHEAD_FACTOR = MTU_FRAME_BYTES / TCP_PAYLOAD_BYTES
MIN_BURST_BYTES = 2 * MTU_FRAME_BYTES
BURST_S = 0.01                  # burst = 10 ms of the current rate (at least two frames)
FRAME_SLACK = 0.01              # a thin bin's whole frames take 1% longer than the bin
ROOT_HANDLE = "1:"
CLASS_ID = "1:1"
LEAF_HANDLE = "10:"


@dataclass(frozen=True)
class ShapeParams:
    """What the shaper is set to for one bin: rate (bit/s), burst (bytes), leaf queue."""

    rate_bps: int
    burst_bytes: int
    queue_packets: int
    delay_ms: float = 0.0       # delay or loss > 0: netem leaf (only where netem exists),
    loss_pct: float = 0.0       # else a pfifo leaf


def shaped_rate_bps(trace_mbps: float, step_s: float, compensate: bool) -> int:
    """The HTB rate for a trace capacity.

    trace_mbps: the trace's capacity (Mbit/s). step_s: the replay bin (s); a zero (or
    tiny) capacity becomes one full frame per bin, never ``rate 8bit``: a near-zero HTB rate
    puts the class into a debt that blocks it for up to a minute after the outage ends.
    compensate: scale by 1514/1448 so TCP goodput (not frame bytes) matches the trace.
    """
    rate = trace_mbps * 1e6 * (TCP_OVERHEAD_FACTOR if compensate else 1.0)
    floor = math.ceil(MTU_FRAME_BYTES * 8 / step_s)
    return int(max(round(rate), floor))


def replay_rates_bps(rates_mbps: np.ndarray, durations_s: np.ndarray, floor_steps_s: np.ndarray,
                     compensate: bool, thin_frames: int, zero_min_step_s: float = 1.0
                     ) -> np.ndarray:
    """HTB rate (bit/s) for each change of a replay schedule.

    rates_mbps: trace capacity per change; durations_s: how long each holds; floor_steps_s:
    the bin width the zero floor uses (taken as at least ``zero_min_step_s``).
    A change carrying at least ``thin_frames`` frames gets ``shaped_rate_bps``. A thinner one
    gets a whole number of frames (fractions carried to the next non-zero thin change, so
    the total is kept) at a rate that makes them last ``FRAME_SLACK`` longer than the change; none:
    the one-frame zero floor. Why: HTB sends a frame whenever its tokens are >= 0 and pays
    afterwards, in time at the rate then in force. With n frames fitting the bin exactly an
    (n+1)-th leaves just before the bin ends, and its cost (a whole thin bin's worth) keeps
    the next bin blocked however fast that one is. ``thin_frames`` 0: no quantising.
    """
    out = np.empty(len(rates_mbps), dtype=np.int64)
    factor = TCP_OVERHEAD_FACTOR if compensate else 1.0
    carry = 0.0
    for i, (mbps, dur, step) in enumerate(zip(rates_mbps, durations_s, floor_steps_s)):
        step = max(float(step), zero_min_step_s)
        frames = mbps * 1e6 * factor * dur / (MTU_FRAME_BYTES * 8)
        if frames >= thin_frames:
            out[i] = shaped_rate_bps(mbps, step, compensate)
            continue
        n = 0
        if mbps > 0:            # an outage keeps the carry: no capacity moves into it
            carry += frames
            n = math.floor(carry + 1e-9)
            carry -= n
        if n >= 1:
            out[i] = int(n * MTU_FRAME_BYTES * 8 / (dur * (1 + FRAME_SLACK)))
        else:
            out[i] = int(MTU_FRAME_BYTES * 8 / (step * (1 + FRAME_SLACK)))
    return out


def burst_bytes_for(rate_bps: int, burst_bytes: int | None = None) -> int:
    """burst = cburst: explicit value, else 10 ms of the rate, at least two frames."""
    if burst_bytes is not None:
        return int(burst_bytes)
    return int(max(MIN_BURST_BYTES, math.ceil(rate_bps / 8 * BURST_S)))


def queue_packets_for(rate_bps: int, queue_packets: int, queue_ms: float | None) -> int:
    """Leaf queue length (packets): fixed, or ``queue_ms`` of the current rate (>= 4 frames,
    at most ``queue_packets`` when both are given)."""
    if queue_ms is None:
        return int(queue_packets)
    n = math.ceil(rate_bps / 8 * queue_ms / 1000 / MTU_FRAME_BYTES)
    return int(min(max(4, n), queue_packets))


def _class_args(p: ShapeParams) -> str:
    return (f"htb rate {p.rate_bps}bit ceil {p.rate_bps}bit "
            f"burst {p.burst_bytes}b cburst {p.burst_bytes}b")


def netem_args(delay_ms: float, loss_pct: float) -> str:
    """netem options for a delay (ms) and a random loss (%), either may be 0."""
    parts = [f"delay {delay_ms:g}ms"] if delay_ms > 0 else []
    if loss_pct > 0:
        parts.append(f"loss {loss_pct:g}%")
    return " ".join(parts)


def _leaf_args(p: ShapeParams) -> str:
    if p.delay_ms > 0 or p.loss_pct > 0:
        return f"netem {netem_args(p.delay_ms, p.loss_pct)} limit {p.queue_packets}"
    return f"pfifo limit {p.queue_packets}"


def setup_cmds(dev: str, p: ShapeParams) -> list[list[str]]:
    """Commands (argv, without the leading ``tc``) that install the shaper on ``dev``."""
    return [
        ["qdisc", "add", "dev", dev, "root", "handle", ROOT_HANDLE, "htb", "default", "1"],
        ["class", "add", "dev", dev, "parent", ROOT_HANDLE, "classid", CLASS_ID,
         *_class_args(p).split()],
        ["qdisc", "add", "dev", dev, "parent", CLASS_ID, "handle", LEAF_HANDLE,
         *_leaf_args(p).split()],
    ]


def change_lines(dev: str, old: ShapeParams | None, new: ShapeParams) -> list[str]:
    """``tc -batch`` lines that move ``dev`` from ``old`` to ``new`` (class change keeps the
    queued packets; the leaf is changed only when its length changes)."""
    lines = []
    if old is None or (old.rate_bps, old.burst_bytes) != (new.rate_bps, new.burst_bytes):
        lines.append(f"class change dev {dev} parent {ROOT_HANDLE} classid {CLASS_ID} "
                     f"{_class_args(new)}")
    if old is None or ((old.queue_packets, old.delay_ms, old.loss_pct)
                       != (new.queue_packets, new.delay_ms, new.loss_pct)):
        lines.append(f"qdisc change dev {dev} parent {CLASS_ID} handle {LEAF_HANDLE} "
                     f"{_leaf_args(new)}")
    return lines


def delay_probe_cmds(dev: str) -> list[list[str]]:
    """Commands that succeed only where the kernel has netem (run on a throwaway device)."""
    return [["qdisc", "add", "dev", dev, "root", "netem", "delay", "1ms"]]
