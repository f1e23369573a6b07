"""Link options shared by both backends: one typed, validated object."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields


class BackendError(RuntimeError):
    """The emulated network cannot be built or used as asked (message says why)."""


@dataclass(frozen=True)
class LinkOptions:
    """compensate_tcp_overhead: shape at trace x 1514/1448 so TCP goodput matches the trace.
    queue_packets: leaf queue under each shaped class (packets; default 100, measured).
    queue_ms: if set, the queue is resized with the rate to hold this many ms (capped by
    queue_packets). burst_bytes: HTB burst and cburst (None: 10 ms of the rate, >= 2 frames).
    bin_s: replay bin (s); None = the trace's own step, or 0.1 s bins for traces with steps
    finer than 0.1 s. min_bin_frames: (Mininet) replay bins carrying fewer than this many
    1500-byte packets are merged with their neighbours inside the same second of the trace,
    and bins still that thin get whole frames (0: off, bin by bin; why in
    ``replay.merge_thin_bins`` and ``tc.replay_rates_bps``). delay_ms: one-way delay on
    each shaped link (explicit request). loss_pct: random loss on each shaped link (%,
    explicit request).
    allow_no_delay / allow_no_loss: where the delay / loss cannot be applied (no netem in
    the kernel; loss in the user-space relay), continue without it (else refuse).
    """

    compensate_tcp_overhead: bool = True
    queue_packets: int = 100
    queue_ms: float | None = None
    burst_bytes: int | None = None
    bin_s: float | None = None
    min_bin_frames: int = 12
    delay_ms: float = 0.0
    loss_pct: float = 0.0
    allow_no_delay: bool = False
    allow_no_loss: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.queue_packets, int) or self.queue_packets < 1:
            raise BackendError(f"link_options.queue_packets: expected an integer >= 1, "
                               f"got {self.queue_packets!r}")
        for name in ("queue_ms", "burst_bytes", "bin_s"):
            v = getattr(self, name)
            if v is not None and not (isinstance(v, (int, float)) and v > 0):
                raise BackendError(f"link_options.{name}: expected a number > 0 or None, "
                                   f"got {v!r}")
        if not isinstance(self.delay_ms, (int, float)) or self.delay_ms < 0:
            raise BackendError(f"link_options.delay_ms: expected a number >= 0, "
                               f"got {self.delay_ms!r}")
        if not isinstance(self.loss_pct, (int, float)) or not 0 <= self.loss_pct < 100:
            raise BackendError(f"link_options.loss_pct: expected a number in [0, 100), "
                               f"got {self.loss_pct!r}")
        if not isinstance(self.min_bin_frames, int) or self.min_bin_frames < 0:
            raise BackendError(f"link_options.min_bin_frames: expected an integer >= 0, "
                               f"got {self.min_bin_frames!r}")

    @classmethod
    def from_mapping(cls, d: dict | LinkOptions | None) -> LinkOptions:
        if d is None:
            return cls()
        if isinstance(d, LinkOptions):
            return d
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise BackendError(f"link_options: unknown key(s) {', '.join(unknown)} "
                               f"(expected some of {', '.join(sorted(known))})")
        return cls(**d)

    def to_dict(self) -> dict:
        return asdict(self)
