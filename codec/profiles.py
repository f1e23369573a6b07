"""Device decode-latency profiles: how long a chunk takes on hardware this machine may lack.

A profile names, per decode device (``cpu``, ``gpu``, ``npu``), the seconds one 256x256
frame of the ``local`` prompt model takes plus a per-chunk overhead, and a factor for pixel
(H.264/H.265) decoding relative to the catalog's measured CPU figure. A player or the
simulator uses ``decode_s(profile, representation, device)`` to hold each decode to that
device's latency (``players.decode.DecodeWorker(hold_s=...)``); the profile's name goes
into the run's metadata with the rest of the config.

Where the figures come from:
- ``cpu-local``: measured on this machine (2 cores, torch 2.13 CPU, ``DECODE_THREADS`` = 2
  torch threads, recorded as the profile's ``threads``) with ``bench/codec_speed.py``:
  whole 30-frame chunks of the local model at 256x256. The player's decode worker uses the
  same thread count unless told otherwise.
- ``phone-gpu`` and ``npu``: ASSUMED, not measured (no such device here). ``phone-gpu``
  takes a mobile GPU in fp16 at about 4x this CPU for this small convolutional model;
  ``npu`` about 10x, the scale of PromptMobile's reported speed-ups for on-device decoding.
  Their CPUs are taken to be 2x slower than this machine's (phone cores).
"""

from __future__ import annotations

from dataclasses import dataclass, field

FRAME_PIXELS = 256 * 256
FALLBACK_PIXEL_DECODE_S = 0.01
# torch threads of every measured prompt decode: the catalog's decode_cost
# (codec.catalog), the cpu-local profile (bench/codec_speed.py's default) and, so that
# playback matches what schedulers were told, the player's decode worker by default.
DECODE_THREADS = 2


@dataclass(frozen=True)
class DeviceFigures:
    """s_per_frame: seconds per 256x256 prompt frame (scaled by pixel count).
    s_per_chunk: fixed seconds per chunk (parsing, keyframe chain, transfers)."""

    s_per_frame: float
    s_per_chunk: float = 0.0


@dataclass(frozen=True)
class Profile:
    name: str
    prompt: dict = field(default_factory=dict)   # device -> DeviceFigures
    pixel_cpu_factor: float = 1.0                 # x the catalog's measured cpu decode cost
    source: str = ""
    threads: int | None = None                    # torch threads measured with; None: assumed


PROFILES = {
    "cpu-local": Profile(
        "cpu-local", {"cpu": DeviceFigures(0.0105, 0.03)}, 1.0,
        f"measured here: bench/codec_speed.py, 30-frame chunks, {DECODE_THREADS} torch threads",
        threads=DECODE_THREADS),
    "phone-gpu": Profile(
        "phone-gpu", {"cpu": DeviceFigures(0.021, 0.06), "gpu": DeviceFigures(0.0026, 0.01)},
        2.0, "assumed: phone GPU ~4x this CPU on the local model; phone CPU 2x slower"),
    "npu": Profile(
        "npu", {"cpu": DeviceFigures(0.021, 0.06), "npu": DeviceFigures(0.00105, 0.005)},
        2.0, "assumed: NPU ~10x this CPU (PromptMobile-scale speed-up); phone CPU 2x slower"),
}


def get(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown device profile {name!r}; known: "
                         f"{', '.join(sorted(PROFILES))}") from None


def chunk_decode_s(profile: str, device: str, frames: int, kind: str = "prompt",
                   pixels: int = FRAME_PIXELS, measured_cpu_s: float | None = None) -> float | None:
    """Seconds to decode one chunk of ``frames`` frames on ``device`` (None: that device
    cannot decode it under this profile). measured_cpu_s: the catalog's measured pixel
    decode time (pixel chunks only)."""
    p = get(profile)
    if kind == "pixel":
        if device != "cpu":
            return None
        base = measured_cpu_s if measured_cpu_s is not None else FALLBACK_PIXEL_DECODE_S
        return base * p.pixel_cpu_factor
    fig = p.prompt.get(device)
    if fig is None:
        return None
    return fig.s_per_chunk + fig.s_per_frame * frames * pixels / FRAME_PIXELS


def decode_s(profile: str, rep, device: str, pixels: int = FRAME_PIXELS) -> float | None:
    """Seconds one chunk of manifest representation ``rep`` (``origin.manifest.
    Representation``) takes on ``device`` under ``profile``; the longest chunk's frame
    count is used so that a hold never undershoots."""
    frames = max((c.frames for c in rep.chunks), default=0)
    measured = None
    if rep.kind == "pixel" and "cpu" in rep.decode_cost:
        measured = rep.decode_cost["cpu"].s_per_chunk_mean
    return chunk_decode_s(profile, device, frames, rep.kind, pixels, measured)
