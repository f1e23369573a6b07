"""Source frames of catalog videos: deterministic synthetic videos, or the user's own files.

Synthetic videos pan and zoom over photographs bundled inside installed packages
(scikit-image's and scikit-learn's sample images), cut between 1-3 shots, with textured
objects moving over them, so encoders and decoders face natural texture and motion. Every
frame is a pure function of ``(spec, frame index)``, so any chunk can be rendered again
later without storing the source (the prompt codec does exactly that to fit its prompts).

A source is described by a JSON-able dict stored in each video manifest under ``source``:
  synthetic: {kind: "synthetic", generator, seed, index, shots: [...], objects: [...]}
  file:      {kind: "file", path, file_sha256}
plus ``frames_sha256``, the digest of all source frames (RGB uint8, frame order), which
``read_source_chunk`` checks when asked to.
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np

GENERATOR = "promptbed-synth-1"

# (package, name): photographs that ship inside the installed packages (no download).
PHOTOS = (
    ("skimage", "astronaut"), ("skimage", "chelsea"), ("skimage", "coffee"),
    ("skimage", "hubble_deep_field"), ("skimage", "immunohistochemistry"),
    ("skimage", "rocket"), ("skimage", "retina"),
    ("sklearn", "china"), ("sklearn", "flower"),
    ("skimage", "camera"), ("skimage", "brick"), ("skimage", "gravel"), ("skimage", "grass"),
)


class SourceError(ValueError):
    """A source video cannot be read or does not match its recorded digest."""


@functools.lru_cache(maxsize=16)
def load_photo(package: str, name: str) -> np.ndarray:
    """One bundled photograph as (H, W, 3) uint8 RGB."""
    if package == "skimage":
        import skimage.data

        img = getattr(skimage.data, name)()
    elif package == "sklearn":
        from sklearn.datasets import load_sample_image

        img = load_sample_image(f"{name}.jpg")
    else:
        raise ValueError(f"unknown photo package {package!r}")
    img = np.asarray(img)
    if img.dtype != np.uint8:
        img = (img > 0).astype(np.uint8) * 255 if img.dtype == bool else img.astype(np.uint8)
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    return np.ascontiguousarray(img[:, :, :3])


# ----------------------------------------------------------------------------- synthetic


def synthetic_spec(seed: int, index: int, n_frames: int, fps: float) -> dict:
    """Draw the description of synthetic video ``index`` of a catalog seeded with ``seed``."""
    rng = np.random.default_rng([int(seed), int(index)])
    duration_s = n_frames / fps
    n_shots = int(rng.integers(1, 4)) if duration_s >= 6 else 1
    cuts = sorted(rng.uniform(0.2, 0.8, n_shots - 1) * n_frames)
    bounds = [0, *[int(c) for c in cuts], n_frames]
    shots = []
    for k in range(n_shots):
        pkg, name = PHOTOS[int(rng.integers(len(PHOTOS)))]
        z0, z1 = rng.uniform(1.0, 2.2, 2)
        shots.append({
            "start_frame": bounds[k], "end_frame": bounds[k + 1],
            "photo": f"{pkg}:{name}",
            # Centres in fractions of the photo; zoom 1 = the crop spans the photo's short side.
            "centre0": [float(v) for v in rng.uniform(0.3, 0.7, 2)],
            "centre1": [float(v) for v in rng.uniform(0.3, 0.7, 2)],
            "zoom0": float(z0), "zoom1": float(z1),
            "wobble_px": float(rng.uniform(0, 4)),
        })
    objects = []
    for _ in range(int(rng.integers(2, 5))):
        pkg, name = PHOTOS[int(rng.integers(len(PHOTOS)))]
        objects.append({
            "shape": "disc" if rng.random() < 0.5 else "box",
            "photo": f"{pkg}:{name}",
            "size": float(rng.uniform(0.12, 0.3)),          # fraction of the frame's short side
            "pos0": [float(v) for v in rng.uniform(0.1, 0.9, 2)],  # fraction of frame (y, x)
            "vel": [float(v) for v in rng.uniform(-0.35, 0.35, 2)],  # frame fractions per s
            "tex_offset": [float(v) for v in rng.uniform(0, 1, 2)],
        })
    return {"kind": "synthetic", "generator": GENERATOR, "seed": int(seed), "index": int(index),
            "shots": shots, "objects": objects}


def _photo(ref: str) -> np.ndarray:
    pkg, name = ref.split(":", 1)
    return load_photo(pkg, name)


def _bilinear(img: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Sample ``img`` at float coordinates (clamped to the border)."""
    h, w = img.shape[:2]
    ys = np.clip(ys, 0, h - 1.001)
    xs = np.clip(xs, 0, w - 1.001)
    y0 = ys.astype(np.int32)
    x0 = xs.astype(np.int32)
    fy = (ys - y0)[..., None].astype(np.float32)
    fx = (xs - x0)[..., None].astype(np.float32)
    a = img[y0, x0].astype(np.float32)
    b = img[y0, x0 + 1].astype(np.float32)
    c = img[y0 + 1, x0].astype(np.float32)
    d = img[y0 + 1, x0 + 1].astype(np.float32)
    top = a + (b - a) * fx
    bot = c + (d - c) * fx
    return top + (bot - top) * fy


def _smooth(u: float) -> float:
    return u * u * (3 - 2 * u)


def _reflect(v: float) -> float:
    """Bounce a coordinate inside [0, 1] (triangle wave)."""
    v = v % 2.0
    return 2.0 - v if v > 1.0 else v


def render_frame(spec: dict, t: int, width: int, height: int, fps: float) -> np.ndarray:
    """Frame ``t`` (index) of a synthetic video as (height, width, 3) uint8 RGB."""
    shot = next((s for s in spec["shots"] if s["start_frame"] <= t < s["end_frame"]),
                spec["shots"][-1])
    img = _photo(shot["photo"])
    ih, iw = img.shape[:2]
    n = max(1, shot["end_frame"] - shot["start_frame"] - 1)
    u = _smooth(min(1.0, max(0.0, (t - shot["start_frame"]) / n)))
    cy = (shot["centre0"][0] + (shot["centre1"][0] - shot["centre0"][0]) * u) * ih
    cx = (shot["centre0"][1] + (shot["centre1"][1] - shot["centre0"][1]) * u) * iw
    ts = t / fps
    cy += shot["wobble_px"] * math.sin(2 * math.pi * 0.7 * ts)
    cx += shot["wobble_px"] * math.cos(2 * math.pi * 0.5 * ts)
    zoom = shot["zoom0"] * (shot["zoom1"] / shot["zoom0"]) ** u
    span = min(ih, iw) / zoom  # photo pixels covered by the frame's short side
    scale = span / min(width, height)
    yy = (np.arange(height, dtype=np.float32) - height / 2 + 0.5) * scale + cy
    xx = (np.arange(width, dtype=np.float32) - width / 2 + 0.5) * scale + cx
    ys, xs = np.meshgrid(yy, xx, indexing="ij")
    frame = _bilinear(img, ys, xs)

    short = min(width, height)
    gy = np.arange(height, dtype=np.float32)[:, None]
    gx = np.arange(width, dtype=np.float32)[None, :]
    for obj in spec["objects"]:
        r = obj["size"] * short / 2
        py = _reflect(obj["pos0"][0] + obj["vel"][0] * ts) * height
        px = _reflect(obj["pos0"][1] + obj["vel"][1] * ts) * width
        y0, y1 = max(0, int(py - r - 2)), min(height, int(py + r + 3))
        x0, x1 = max(0, int(px - r - 2)), min(width, int(px + r + 3))
        if y0 >= y1 or x0 >= x1:
            continue
        dy = gy[y0:y1] - py
        dx = gx[:, x0:x1] - px
        if obj["shape"] == "disc":
            dist = np.sqrt(dy * dy + dx * dx) - r
        else:
            dist = np.maximum(np.abs(dy), np.abs(dx)) - r
        alpha = np.clip(0.5 - dist, 0.0, 1.0)[..., None]  # one-pixel soft edge
        tex = _photo(obj["photo"])
        th, tw = tex.shape[:2]
        # The texture travels with the object: it is a moving thing, not a window.
        oy = obj["tex_offset"][0] * (th - 2 * r - 2) + r
        ox = obj["tex_offset"][1] * (tw - 2 * r - 2) + r
        tys = np.broadcast_to(dy + oy, (y1 - y0, x1 - x0))
        txs = np.broadcast_to(dx + ox, (y1 - y0, x1 - x0))
        patch = _bilinear(tex, tys, txs)
        region = frame[y0:y1, x0:x1]
        frame[y0:y1, x0:x1] = region + (patch - region) * alpha
    return np.clip(frame + 0.5, 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------- user files


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def probe_file(path: Path, max_duration_s: float | None = None) -> float:
    """Duration (s) of a video file's first video stream, capped at ``max_duration_s``."""
    import av

    try:
        with av.open(str(path)) as c:
            if not c.streams.video:
                raise SourceError(f"{path}: no video stream")
            s = c.streams.video[0]
            if s.duration is not None and s.time_base is not None:
                d = float(s.duration * s.time_base)
            elif c.duration is not None:
                d = c.duration / 1_000_000
            else:
                d = sum(1 for _ in c.decode(s)) / float(s.average_rate or 30)
    except av.FFmpegError as exc:
        raise SourceError(f"{path}: PyAV cannot read it: {exc}") from None
    if d <= 0:
        raise SourceError(f"{path}: video has no duration")
    return min(d, max_duration_s) if max_duration_s else d


def _fit_frame(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    """Scale so the frame covers width x height, then centre-crop."""
    h, w = rgb.shape[:2]
    scale = max(width / w, height / h)
    ch, cw = height / scale, width / scale
    y0, x0 = (h - ch) / 2, (w - cw) / 2
    yy = y0 + (np.arange(height, dtype=np.float32) + 0.5) * (ch / height) - 0.5
    xx = x0 + (np.arange(width, dtype=np.float32) + 0.5) * (cw / width) - 0.5
    ys, xs = np.meshgrid(yy, xx, indexing="ij")
    return np.clip(_bilinear(rgb, ys, xs) + 0.5, 0, 255).astype(np.uint8)


def _iter_file_frames(path: Path, width: int, height: int, fps: float,
                      n_frames: int) -> Iterator[np.ndarray]:
    """Frames resampled to ``fps`` (the latest source frame at each output time)."""
    import av

    emitted = 0
    last = None
    try:
        with av.open(str(path)) as c:
            s = c.streams.video[0]
            for vf in c.decode(s):
                t = float(vf.time) if vf.time is not None else emitted / fps
                rgb = vf.to_ndarray(format="rgb24")
                # Emit every output frame whose time has come before this source frame.
                while emitted < n_frames and emitted / fps < t - 1e-6 and last is not None:
                    yield last
                    emitted += 1
                last = _fit_frame(rgb, width, height)
                if emitted >= n_frames:
                    return
    except av.FFmpegError as exc:
        raise SourceError(f"{path}: decoding failed: {exc}") from None
    if last is None:
        raise SourceError(f"{path}: no frame decoded")
    while emitted < n_frames:  # the last source frame holds until the end
        yield last
        emitted += 1


def file_spec(path: Path) -> dict:
    path = Path(path).resolve()
    return {"kind": "file", "path": str(path), "file_sha256": file_sha256(path)}


# ----------------------------------------------------------------------------- access


def iter_source_chunks(spec: dict, width: int, height: int, fps: float, n_frames: int,
                       frames_per_chunk: int, start_chunk: int = 0) -> Iterator[np.ndarray]:
    """Yield the source frames chunk by chunk, each (frames, height, width, 3) uint8."""
    if spec.get("kind") == "synthetic":
        if spec.get("generator") != GENERATOR:
            raise SourceError(f"unknown synthetic generator {spec.get('generator')!r}; "
                              f"this program has {GENERATOR!r}")
        for start in range(start_chunk * frames_per_chunk, n_frames, frames_per_chunk):
            end = min(n_frames, start + frames_per_chunk)
            yield np.stack([render_frame(spec, t, width, height, fps) for t in range(start, end)])
        return
    if spec.get("kind") == "file":
        path = Path(spec["path"])
        if not path.is_file():
            raise SourceError(f"source file {path} is gone")
        buf: list[np.ndarray] = []
        chunk = 0
        for frame in _iter_file_frames(path, width, height, fps, n_frames):
            buf.append(frame)
            if len(buf) == frames_per_chunk:
                if chunk >= start_chunk:
                    yield np.stack(buf)
                buf = []
                chunk += 1
        if buf:
            yield np.stack(buf)
        return
    raise SourceError(f"unknown source kind {spec.get('kind')!r}")


def read_source_chunk(manifest, index: int) -> np.ndarray:
    """Source frames of chunk ``index`` of a video, from its manifest's ``source`` entry.

    manifest: an ``origin.manifest.VideoManifest``. Returns (frames, H, W, 3) uint8 RGB:
    what the pixel representations' ``psnr_db``/``ssim`` were measured against.
    """
    from origin.manifest import frames_per_chunk_of

    fpc = frames_per_chunk_of(manifest.fps, manifest.chunk_s)
    it = iter_source_chunks(dict(manifest.source), manifest.width, manifest.height,
                            manifest.fps, manifest.n_frames, fpc, start_chunk=index)
    try:
        return next(it)
    except StopIteration:
        raise IndexError(f"chunk {index} out of range for video {manifest.video}") from None


def frames_digest() -> hashlib._Hash:
    """A running digest for ``frames_sha256`` (feed it each chunk's bytes in order)."""
    return hashlib.sha256()
