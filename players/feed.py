"""The feed: which videos a session shows, in which order, and how long the user watches each.

Two halves, used on both sides of a run:
- ``plan_feed`` (orchestrator, simulator): from a catalog directory, the feed order (the
  catalog cycled to ``length`` positions, each cycle in a seeded shuffled order) and one
  sampled watch time per position (``traces.swipe.sample_watch_times``), plus each
  position's watch-time pmf. Same seed -> same feed and swipes, whatever the scheduler.
- ``video_spec`` / ``rep_info`` (player, simulator): the ``players.session.VideoSpec`` of a
  feed position from its manifest: representations with per-chunk bytes, per-chunk quality
  (Mbps-equivalent) and decode seconds per device.

Swipe models (``swipe``): ``synthetic`` (``traces.swipe.synthetic_dist`` for the video's
length), ``challenge`` (short-video challenge user-retention curves) or ``dashlet`` (Dashlet
MTurk per-second distributions). Real distributions are assigned to catalog videos by
catalog index (video *k* gets file *k mod n*, files in name order) and stretched onto the
catalog video's length: retention at content second t is the real curve's retention at the
same *fraction* of its own video; the completion probability is kept.

Quality: a pixel chunk's ``q`` is its nominal bitrate / 1000 (Mbps); a prompt chunk's is
the H.264 bitrate of equal SSIM on that chunk's ladder (``origin.manifest.chunk_quality_mbps``:
linear interpolation, capped at the top rung; below the lowest rung it extrapolates along
the two lowest rungs, floored at 0 -- the manifest's one helper, reused here).

Decode seconds: the manifest's measured ``decode_cost[device].s_per_chunk_mean`` with
``device_profile="measured"``; otherwise the named profile of ``codec.profiles``. A pixel
representation decodes on ``cpu`` only.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from origin import manifest as mf
from players.schedulers.base import RepInfo
from players.session import VideoSpec

SWIPE_MODELS = ("synthetic", "challenge", "dashlet")
# Folders under the trace directory holding the real swipe data (PROVENANCE.md).
SWIPE_DIRS = {
    "challenge": ("short-video-challenge/user-retention", "retention"),
    "dashlet": ("dashlet-swipe/turk", "dashlet"),
}
PIXEL_DEVICE = "cpu"
# When a manifest has no measured cpu cost for a pixel rung (a catalog prepared with
# decode_samples=0): a 256x256 1-s H.264 chunk decodes in ~10 ms on the 2-core CI machine.
FALLBACK_PIXEL_DECODE_S = 0.01


class FeedError(ValueError):
    """The feed cannot be built (bad length, unknown swipe model, missing data)."""


@dataclass(frozen=True)
class FeedPlan:
    """One player's feed.

    video_ids / watch_s (content s) / watch_pmf: per feed position.
    swipe: the swipe model used. seed: the seed it was drawn with.
    """

    video_ids: tuple[str, ...]
    watch_s: tuple[float, ...]
    watch_pmf: tuple[tuple[float, ...], ...]
    swipe: str
    seed: int

    def to_config(self) -> dict:
        """The ``feed`` section of a player config (``python -m players``)."""
        return {"videos": list(self.video_ids), "watch_s": [float(w) for w in self.watch_s],
                "watch_pmf": [list(p) for p in self.watch_pmf], "swipe": self.swipe}


# ----------------------------------------------------------------------------- order


def feed_order(video_ids: Sequence[str], length: int, seed: int) -> list[str]:
    """``length`` video ids: the catalog cycled, each cycle in its own seeded order.

    A longer feed keeps the earlier positions (cycle *c* depends only on (seed, c)).
    """
    if length < 1:
        raise FeedError(f"feed length: expected >= 1, got {length}")
    if not video_ids:
        raise FeedError("feed: the catalog has no videos")
    out: list[str] = []
    cycle = 0
    while len(out) < length:
        rng = np.random.default_rng([int(seed), 0xFEED, cycle])
        out.extend(video_ids[i] for i in rng.permutation(len(video_ids)))
        cycle += 1
    return out[:length]


# ----------------------------------------------------------------------------- swipe


def stretch_dist(dist, length_s: float, name: str | None = None):
    """``dist`` (a ``traces.swipe.WatchDist``) stretched onto a ``length_s``-second video.

    Retention at content second t = ``dist.retention(t / length_s * dist.length_s)``; the
    swipes of the last partial second fold into the last whole bin; completion is kept.
    """
    from traces.swipe import WatchDist

    n = math.floor(length_s + 1e-9)
    if n < 1:
        # A sub-second video: everybody who starts it sees it through.
        return WatchDist(np.array([1.0]), max(length_s, 1e-3), name=name or dist.name,
                         source=dist.source)
    scale = dist.length_s / length_s
    ret = [dist.retention(i * scale) for i in range(n)] + [dist.completion]
    pmf = np.array([ret[i] - ret[i + 1] for i in range(n)] + [dist.completion])
    pmf = np.clip(pmf, 0.0, None)
    return WatchDist(pmf / pmf.sum(), float(length_s), name=name or dist.name,
                     source=dist.source, meta={**dist.meta, "stretched_from_s": dist.length_s})


def _real_dists(swipe: str, trace_root: str | os.PathLike | None):
    from traces.paths import trace_dir
    from traces.swipe import load_swipe_dir

    root = Path(trace_root) if trace_root is not None else trace_dir()
    if root is None:
        raise FeedError(f"swipe model {swipe!r} needs the real swipe data: no trace "
                        f"directory (set PROMPTBED_TRACES or place shared/traces beside the "
                        f"checkout), or use swipe = \"synthetic\"")
    folder, fmt = SWIPE_DIRS[swipe]
    return load_swipe_dir(root / folder, fmt)


def watch_dists(catalog: mf.Catalog, swipe: str = "synthetic",
                trace_root: str | os.PathLike | None = None) -> dict:
    """video id -> ``WatchDist`` for every catalog video under swipe model ``swipe``."""
    from traces.swipe import synthetic_dist

    if swipe not in SWIPE_MODELS:
        raise FeedError(f"swipe: unknown model {swipe!r}; valid: {', '.join(SWIPE_MODELS)}")
    out = {}
    if swipe == "synthetic":
        for v in catalog.videos:
            out[v.id] = (synthetic_dist(v.duration_s, name=v.id) if v.duration_s >= 1
                         else stretch_dist(synthetic_dist(1.0), v.duration_s, v.id))
        return out
    real = _real_dists(swipe, trace_root)
    for k, v in enumerate(catalog.videos):
        out[v.id] = stretch_dist(real[k % len(real)], v.duration_s, name=v.id)
    return out


def plan_feed(catalog_dir: str | os.PathLike, length: int, seed: int,
              swipe: str = "synthetic", trace_root: str | os.PathLike | None = None) -> FeedPlan:
    """One player's feed from the catalog in ``catalog_dir`` (see the module docstring)."""
    catalog = mf.load_catalog(catalog_dir)
    return plan_from_catalog(catalog, length, seed, swipe, trace_root)


def plan_from_catalog(catalog: mf.Catalog, length: int, seed: int, swipe: str = "synthetic",
                      trace_root: str | os.PathLike | None = None) -> FeedPlan:
    """``plan_feed`` on an already loaded (or fetched) catalog."""
    from traces.swipe import sample_watch_times

    ids = feed_order(catalog.video_ids, length, seed)
    dists = watch_dists(catalog, swipe, trace_root)
    per_pos = [dists[v] for v in ids]
    watch = sample_watch_times(per_pos, seed)
    return FeedPlan(tuple(ids), tuple(float(w) for w in watch),
                    tuple(tuple(float(x) for x in d.pmf) for d in per_pos), swipe, int(seed))


# ----------------------------------------------------------------------------- specs


def profile_decode_s(profile: str, rep: mf.Representation, device: str) -> float | None:
    """Seconds a chunk of ``rep`` takes on ``device`` under the named ``codec.profiles``
    profile (None: the profile cannot decode it there)."""
    try:
        from codec import profiles
    except ImportError as exc:
        raise FeedError(f"device_profile {profile!r}: codec.profiles is not available "
                        f"({exc}); use device_profile = \"measured\"") from None
    return profiles.decode_s(profile, rep, device)


def rep_info(vm: mf.VideoManifest, name: str, devices: Sequence[str],
             device_profile: str = "measured") -> RepInfo:
    """The scheduler's view of one representation of ``vm`` (see the module docstring)."""
    rep = vm.representation(name)
    decode_s: dict[str, float] = {}
    targets = [PIXEL_DEVICE] if rep.kind == "pixel" else list(devices)
    for dev in targets:
        if device_profile != "measured":
            s = profile_decode_s(device_profile, rep, dev)
        elif dev in rep.decode_cost:
            s = rep.decode_cost[dev].s_per_chunk_mean
        elif rep.kind == "pixel":
            s = FALLBACK_PIXEL_DECODE_S
        else:
            s = None
        if s is not None:
            decode_s[dev] = float(s)
    return RepInfo(
        name=name, kind=rep.kind, bitrate_kbps=float(rep.bitrate_kbps),
        chunk_bytes=tuple(c.bytes for c in rep.chunks),
        chunk_quality_mbps=tuple(float(q) for q in mf.chunk_quality_mbps(vm, name))
        if rep.kind == "pixel" or vm.pixel_ladder("h264") else tuple(0.0 for _ in rep.chunks),
        decode_s=mf.FrozenMap(decode_s),
    )


def _rep_order(vm: mf.VideoManifest) -> list[str]:
    reps = list(vm.representations.values())
    pixel = sorted((r for r in reps if r.kind == "pixel"), key=lambda r: (r.bitrate_kbps, r.name))
    prompt = sorted((r for r in reps if r.kind == "prompt"), key=lambda r: (r.bitrate_kbps, r.name))
    return [r.name for r in pixel + prompt]


def video_spec(vm: mf.VideoManifest, watch_pmf: Sequence[float], devices: Sequence[str] = ("cpu",),
               device_profile: str = "measured",
               representations: Sequence[str] | None = None) -> VideoSpec:
    """``VideoSpec`` of one feed position. representations: restrict to these names
    (None: all of the manifest's, pixel by bitrate ascending, then prompt)."""
    names = _rep_order(vm)
    if representations is not None:
        missing = [r for r in representations if r not in vm.representations]
        if missing:
            raise FeedError(f"video {vm.video}: no representation(s) {missing}; it has "
                            f"{names}")
        names = [n for n in names if n in set(representations)]
    if not names:
        raise FeedError(f"video {vm.video}: no representations")
    return VideoSpec(
        video_id=vm.video, duration_s=vm.duration_s, chunk_s=vm.chunk_s, n_chunks=vm.n_chunks,
        representations=tuple(rep_info(vm, n, devices, device_profile) for n in names),
        watch_pmf=tuple(float(x) for x in watch_pmf),
    )


def build_specs(manifests: Mapping[str, mf.VideoManifest], plan_or_ids, watch_pmf=None,
                devices: Sequence[str] = ("cpu",), device_profile: str = "measured",
                representations: Sequence[str] | None = None) -> list[VideoSpec]:
    """VideoSpecs for a whole feed. plan_or_ids: a ``FeedPlan`` or a list of video ids
    (then ``watch_pmf``, one pmf per position, is required). Specs of a repeated video are
    built once per distinct (video, pmf)."""
    if isinstance(plan_or_ids, FeedPlan):
        ids, pmfs = plan_or_ids.video_ids, plan_or_ids.watch_pmf
    else:
        ids = tuple(plan_or_ids)
        if watch_pmf is None or len(watch_pmf) != len(ids):
            raise FeedError(f"feed: expected one watch_pmf per position ({len(ids)})")
        pmfs = tuple(tuple(float(x) for x in p) for p in watch_pmf)
    cache: dict = {}
    out = []
    for vid, pmf in zip(ids, pmfs):
        if vid not in manifests:
            raise FeedError(f"feed: video {vid!r} is not in the catalog")
        key = (vid, tuple(pmf))
        if key not in cache:
            cache[key] = video_spec(manifests[vid], pmf, devices, device_profile,
                                    representations)
        out.append(cache[key])
    return out


def load_feed(catalog_dir: str | os.PathLike, length: int, seed: int, swipe: str = "synthetic",
              devices: Sequence[str] = ("cpu",), device_profile: str = "measured",
              trace_root: str | os.PathLike | None = None,
              representations: Sequence[str] | None = None) -> tuple[FeedPlan, list[VideoSpec]]:
    """Plan and specs in one call, from a local catalog (the simulator's entry)."""
    catalog = mf.load_catalog(catalog_dir)
    plan = plan_from_catalog(catalog, length, seed, swipe, trace_root)
    manifests = {vid: catalog.load_video(vid) for vid in sorted(set(plan.video_ids))}
    return plan, build_specs(manifests, plan, devices=devices, device_profile=device_profile,
                             representations=representations)
