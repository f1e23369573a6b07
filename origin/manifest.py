"""The one catalog/manifest schema shared by the origin, the players, the codec and the simulator.

A catalog directory holds::

    catalog.json                          Catalog: layout + the list of videos
    videos/<id>/manifest.json             VideoManifest: every representation of one video
    videos/<id>/<chunk path>              chunk files, paths relative to the video directory

``catalog.json``::

    {schema_version, chunk_s, fps, width, height,
     videos: [{id, duration_s, n_chunks}]}

``videos/<id>/manifest.json``::

    {schema_version, video, fps, width, height, chunk_s, n_chunks, n_frames, duration_s,
     source: {...free-form provenance of the source frames...},
     representations: {
       "pixel/h264/250": {kind: "pixel", codec: "h264", bitrate_kbps: 250,
                          container: "annexb", encoder: {...},
                          chunks: [{index, bytes, sha256, frames, duration_s,
                                    psnr_db, ssim, path}],
                          decode_cost: {"cpu": {s_per_chunk_mean, s_per_chunk_p95,
                                                measured_on, n_samples}}},
       "prompt/local/r8": {kind: "prompt", model: "local", rank: 8, model_hash: "...",
                           init_bytes: 66000, params: {...}, chunks: [...],
                           decode_cost: {...}}}}

Units: ``bytes`` in bytes, ``*_s`` seconds, ``*_kbps`` kilobits (1000 bit) per second,
``psnr_db`` decibels over RGB, ``ssim`` in [0, 1] (mean over RGB channels). A prompt
representation's ``init_bytes`` (the one-off first-frame data) is counted inside chunk 0's
``bytes``. Every error raised while reading is a ``ManifestError`` naming the file and field.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import json
import math
import os
import re
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any

SCHEMA_VERSION = 1
CATALOG_FILE = "catalog.json"
MANIFEST_FILE = "manifest.json"

PIXEL_CODECS = ("h264", "hevc")
_VIDEO_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_PIXEL_NAME_RE = re.compile(r"^pixel/(h264|hevc)/([0-9]+)$")
_PROMPT_NAME_RE = re.compile(r"^prompt/([A-Za-z0-9][A-Za-z0-9_.-]{0,63})/r([0-9]+)$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_PATH_PART_RE = re.compile(r"^[A-Za-z0-9_.-]+$")


class ManifestError(ValueError):
    """A catalog or manifest file does not follow the schema (message names file and field)."""


class FrozenMap(Mapping):
    """A read-only mapping that, unlike ``MappingProxyType``, pickles (for worker processes)."""

    __slots__ = ("_d",)

    def __init__(self, items: Mapping | None = None):
        self._d = dict(items or {})

    def __getitem__(self, key):
        return self._d[key]

    def __iter__(self):
        return iter(self._d)

    def __len__(self) -> int:
        return len(self._d)

    def __repr__(self) -> str:
        return f"FrozenMap({self._d!r})"


# ----------------------------------------------------------------------------- names


def pixel_name(codec: str, bitrate_kbps: int) -> str:
    """Representation name of one pixel ladder rung, e.g. ``pixel/h264/250``."""
    return f"pixel/{codec}/{int(bitrate_kbps)}"


def prompt_name(model: str, rank: int) -> str:
    """Representation name of one prompt representation, e.g. ``prompt/local/r8``."""
    return f"prompt/{model}/r{int(rank)}"


def is_valid_video_id(video_id: str) -> bool:
    return bool(_VIDEO_ID_RE.match(video_id))


def is_valid_representation_name(name: str) -> bool:
    return bool(_PIXEL_NAME_RE.match(name) or _PROMPT_NAME_RE.match(name))


def chunk_url(video_id: str, representation: str, index: int) -> str:
    """URL path of one chunk on the origin: ``/videos/<id>/<representation>/<index>``."""
    return f"/videos/{video_id}/{representation}/{int(index)}"


def manifest_url(video_id: str) -> str:
    """URL path of one video manifest on the origin."""
    return f"/videos/{video_id}/{MANIFEST_FILE}"


# ----------------------------------------------------------------------------- dataclasses


@dataclass(frozen=True)
class DecodeCost:
    """Decode time of one chunk of a representation on one device class (seconds)."""

    s_per_chunk_mean: float
    s_per_chunk_p95: float
    measured_on: str
    n_samples: int = 0

    def to_json(self) -> dict:
        return {
            "s_per_chunk_mean": self.s_per_chunk_mean,
            "s_per_chunk_p95": self.s_per_chunk_p95,
            "measured_on": self.measured_on,
            "n_samples": self.n_samples,
        }


@dataclass(frozen=True)
class Chunk:
    """One chunk file of one representation.

    index: chunk number from 0. bytes: file size (bytes). sha256: hex digest of the file.
    frames: frames it decodes to. duration_s: content seconds it covers (frames / fps).
    psnr_db / ssim: quality of the decoded frames against the source frames.
    path: file path relative to the video directory (POSIX, no ``..``).
    """

    index: int
    bytes: int
    sha256: str
    frames: int
    duration_s: float
    psnr_db: float
    ssim: float
    path: str

    def to_json(self) -> dict:
        return {
            "index": self.index,
            "bytes": self.bytes,
            "sha256": self.sha256,
            "frames": self.frames,
            "duration_s": self.duration_s,
            "psnr_db": self.psnr_db,
            "ssim": self.ssim,
            "path": self.path,
        }


@dataclass(frozen=True)
class Representation:
    """One way to carry every chunk of a video.

    name: ``pixel/h264/<kbps>``, ``pixel/hevc/<kbps>`` or ``prompt/<model>/r<rank>``.
    kind: ``pixel`` or ``prompt`` (follows from the name).
    chunks: one entry per chunk, index order.
    target_kbps: the encoder's target bitrate (pixel only).
    codec / container / encoder: pixel only (``h264``/``hevc``; chunk file format; settings).
    model / rank / model_hash / init_bytes / params: prompt only.
    decode_cost: device class (``cpu``, ``gpu``, ``npu``...) -> measured decode cost.
    """

    name: str
    kind: str
    chunks: tuple[Chunk, ...]
    target_kbps: float | None = None
    codec: str | None = None
    container: str | None = None
    encoder: Mapping[str, Any] = field(default_factory=dict)
    model: str | None = None
    rank: int | None = None
    model_hash: str | None = None
    init_bytes: int = 0
    params: Mapping[str, Any] = field(default_factory=dict)
    decode_cost: Mapping[str, DecodeCost] = field(default_factory=dict)

    @property
    def total_bytes(self) -> int:
        return sum(c.bytes for c in self.chunks)

    @property
    def duration_s(self) -> float:
        return sum(c.duration_s for c in self.chunks)

    @property
    def measured_kbps(self) -> float:
        """Bytes actually stored, over the content duration (kbps)."""
        d = self.duration_s
        return self.total_bytes * 8 / d / 1000 if d > 0 else 0.0

    @property
    def bitrate_kbps(self) -> float:
        """Nominal bitrate for pixel (encoder target), measured for prompt (kbps)."""
        if self.kind == "pixel" and self.target_kbps is not None:
            return float(self.target_kbps)
        return self.measured_kbps

    def chunk(self, index: int) -> Chunk:
        return self.chunks[index]

    def to_json(self) -> dict:
        out: dict[str, Any] = {"kind": self.kind}
        if self.kind == "pixel":
            out["codec"] = self.codec
            out["bitrate_kbps"] = self.target_kbps
            out["container"] = self.container
            out["encoder"] = dict(self.encoder)
        else:
            out["model"] = self.model
            out["rank"] = self.rank
            out["model_hash"] = self.model_hash
            out["init_bytes"] = self.init_bytes
            out["params"] = dict(self.params)
        out["chunks"] = [c.to_json() for c in self.chunks]
        out["decode_cost"] = {k: v.to_json() for k, v in self.decode_cost.items()}
        return out


@dataclass(frozen=True)
class VideoManifest:
    """Everything known about one video of the catalog."""

    video: str
    fps: float
    width: int
    height: int
    chunk_s: float
    n_chunks: int
    n_frames: int
    duration_s: float
    representations: Mapping[str, Representation]
    source: Mapping[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    def representation(self, name: str) -> Representation:
        try:
            return self.representations[name]
        except KeyError:
            raise KeyError(
                f"video {self.video!r} has no representation {name!r}; "
                f"it has: {', '.join(sorted(self.representations)) or '(none)'}"
            ) from None

    def pixel_ladder(self, codec: str = "h264") -> list[Representation]:
        """Pixel representations of one codec, bitrate ascending."""
        reps = [r for r in self.representations.values() if r.kind == "pixel" and r.codec == codec]
        return sorted(reps, key=lambda r: r.bitrate_kbps)

    def chunk_frame_range(self, index: int) -> tuple[int, int]:
        """First frame and frame count of chunk ``index`` (the layout every representation
        shares)."""
        return chunk_frame_range(index, self.fps, self.chunk_s, self.n_frames)

    def to_json(self) -> dict:
        return {
            "schema_version": self.schema_version,
            "video": self.video,
            "fps": self.fps,
            "width": self.width,
            "height": self.height,
            "chunk_s": self.chunk_s,
            "n_chunks": self.n_chunks,
            "n_frames": self.n_frames,
            "duration_s": self.duration_s,
            "source": dict(self.source),
            "representations": {k: v.to_json() for k, v in sorted(self.representations.items())},
        }


@dataclass(frozen=True)
class CatalogVideo:
    """One catalog entry: id, duration (s), number of chunks."""

    id: str
    duration_s: float
    n_chunks: int

    def to_json(self) -> dict:
        return {"id": self.id, "duration_s": self.duration_s, "n_chunks": self.n_chunks}


@dataclass(frozen=True)
class Catalog:
    """The catalog: shared layout plus the list of videos, in feed order.

    root: the catalog directory when loaded from disk (None when parsed from bytes).
    """

    chunk_s: float
    fps: float
    width: int
    height: int
    videos: tuple[CatalogVideo, ...]
    root: Path | None = None
    schema_version: int = SCHEMA_VERSION

    @property
    def video_ids(self) -> list[str]:
        return [v.id for v in self.videos]

    def manifest_path(self, video_id: str) -> Path:
        if self.root is None:
            raise ValueError("catalog was not loaded from a directory")
        return video_manifest_path(self.root, video_id)

    def load_video(self, video_id: str) -> VideoManifest:
        """Load and check one video's manifest against this catalog."""
        if video_id not in self.video_ids:
            raise KeyError(f"catalog has no video {video_id!r}")
        path = self.manifest_path(video_id)
        vm = load_video_manifest(path)
        _check_consistent(self, vm, path)
        return vm

    def to_json(self) -> dict:
        return {
            "schema_version": self.schema_version,
            "chunk_s": self.chunk_s,
            "fps": self.fps,
            "width": self.width,
            "height": self.height,
            "videos": [v.to_json() for v in self.videos],
        }


# ----------------------------------------------------------------------------- layout


def chunk_frame_range(index: int, fps: float, chunk_s: float, n_frames: int) -> tuple[int, int]:
    """First frame and frame count of chunk ``index``; the last chunk may be shorter."""
    frames_per_chunk = frames_per_chunk_of(fps, chunk_s)
    start = index * frames_per_chunk
    if index < 0 or start >= n_frames:
        raise IndexError(f"chunk {index} out of range for {n_frames} frames")
    return start, min(frames_per_chunk, n_frames - start)


def frames_per_chunk_of(fps: float, chunk_s: float) -> int:
    n = fps * chunk_s
    if abs(n - round(n)) > 1e-6 or round(n) < 1:
        raise ValueError(f"chunk_s * fps must be a whole number of frames, got {n}")
    return round(n)


def video_dir(catalog_dir: str | os.PathLike, video_id: str) -> Path:
    if not is_valid_video_id(video_id):
        raise ValueError(f"invalid video id {video_id!r}")
    return Path(catalog_dir) / "videos" / video_id


def video_manifest_path(catalog_dir: str | os.PathLike, video_id: str) -> Path:
    return video_dir(catalog_dir, video_id) / MANIFEST_FILE


# ----------------------------------------------------------------------------- parsing


class _Fields:
    """Typed field access that names the file and the dotted field path in every error."""

    def __init__(self, source: str):
        self.source = source

    def fail(self, where: str, expected: str, got: Any = None) -> ManifestError:
        shown = repr(got)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        return ManifestError(f"{self.source}: field '{where}': expected {expected}, got {shown}")

    def obj(self, value: Any, where: str) -> dict:
        if not isinstance(value, dict):
            raise self.fail(where, "a JSON object", value)
        return value

    def get(self, obj: dict, key: str, where: str) -> Any:
        if key not in obj:
            raise ManifestError(f"{self.source}: field '{_join(where, key)}': missing")
        return obj[key]

    def int_(self, obj: dict, key: str, where: str, minimum: int = 0) -> int:
        v = self.get(obj, key, where)
        if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
            raise self.fail(_join(where, key), f"an integer >= {minimum}", v)
        return v

    def num(self, obj: dict, key: str, where: str, minimum: float = 0.0,
            exclusive: bool = False, maximum: float | None = None) -> float:
        v = self.get(obj, key, where)
        ok = not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v)
        if ok:
            ok = v > minimum if exclusive else v >= minimum
        if ok and maximum is not None:
            ok = v <= maximum
        if not ok:
            rng = f"{'>' if exclusive else '>='} {minimum}" + (
                f" and <= {maximum}" if maximum is not None else "")
            raise self.fail(_join(where, key), f"a finite number {rng}", v)
        return float(v)

    def str_(self, obj: dict, key: str, where: str, pattern: re.Pattern | None = None,
             expected: str = "a string") -> str:
        v = self.get(obj, key, where)
        if not isinstance(v, str) or (pattern is not None and not pattern.match(v)):
            raise self.fail(_join(where, key), expected, v)
        return v

    def opt_obj(self, obj: dict, key: str, where: str) -> dict:
        if key not in obj or obj[key] is None:
            return {}
        return self.obj(obj[key], _join(where, key))

    def list_(self, obj: dict, key: str, where: str) -> list:
        v = self.get(obj, key, where)
        if not isinstance(v, list):
            raise self.fail(_join(where, key), "a JSON list", v)
        return v


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _safe_rel_path(p: str) -> bool:
    if not p or "\\" in p or "\x00" in p:
        return False
    pp = PurePosixPath(p)
    if pp.is_absolute():
        return False
    return all(part not in ("", ".", "..") and _PATH_PART_RE.match(part) for part in pp.parts)


def _check_version(f: _Fields, data: dict) -> int:
    v = f.int_(data, "schema_version", "", minimum=1)
    if v != SCHEMA_VERSION:
        raise f.fail("schema_version", f"{SCHEMA_VERSION} (this program's schema)", v)
    return v


def _read_json(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ManifestError(f"{path}: file not found") from None
    except OSError as exc:
        raise ManifestError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{path}: not valid JSON: {exc.msg} at line {exc.lineno} "
                            f"column {exc.colno}") from None


def _as_json(data: Any, source: str) -> Any:
    if isinstance(data, (bytes, bytearray, str)):
        try:
            return json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ManifestError(f"{source}: not valid JSON: {exc}") from None
    return data


def parse_catalog(data: Any, source: str = "catalog.json", root: Path | None = None) -> Catalog:
    """Validate catalog JSON (bytes, str or parsed object) and build a ``Catalog``.

    source: name used in error messages (a path or URL).
    """
    f = _Fields(source)
    d = f.obj(_as_json(data, source), "(top level)")
    version = _check_version(f, d)
    chunk_s = f.num(d, "chunk_s", "", exclusive=True)
    fps = f.num(d, "fps", "", exclusive=True)
    width = f.int_(d, "width", "", minimum=2)
    height = f.int_(d, "height", "", minimum=2)
    try:
        frames_per_chunk_of(fps, chunk_s)
    except ValueError as exc:
        raise f.fail("chunk_s", "chunk_s * fps to be a whole number of frames",
                     chunk_s) from exc
    videos = []
    seen: set[str] = set()
    for i, v in enumerate(f.list_(d, "videos", "")):
        where = f"videos[{i}]"
        v = f.obj(v, where)
        vid = f.str_(v, "id", where, _VIDEO_ID_RE,
                     "a video id of letters, digits, '_' or '-' (max 64)")
        if vid in seen:
            raise f.fail(_join(where, "id"), "a unique video id", vid)
        seen.add(vid)
        duration_s = f.num(v, "duration_s", where, exclusive=True)
        n_chunks = f.int_(v, "n_chunks", where, minimum=1)
        if n_chunks != math.ceil(duration_s / chunk_s - 1e-9):
            raise f.fail(_join(where, "n_chunks"),
                         f"ceil(duration_s / chunk_s) = {math.ceil(duration_s / chunk_s - 1e-9)}",
                         n_chunks)
        videos.append(CatalogVideo(vid, duration_s, n_chunks))
    return Catalog(chunk_s=chunk_s, fps=fps, width=width, height=height,
                   videos=tuple(videos), root=root, schema_version=version)


def _parse_decode_cost(f: _Fields, d: dict, where: str) -> dict[str, DecodeCost]:
    out = {}
    for device, v in d.items():
        w = f"{where}.{device}"
        v = f.obj(v, w)
        mean = f.num(v, "s_per_chunk_mean", w)
        p95 = f.num(v, "s_per_chunk_p95", w)
        measured_on = f.str_(v, "measured_on", w)
        n = f.int_(v, "n_samples", w) if "n_samples" in v else 0
        out[str(device)] = DecodeCost(mean, p95, measured_on, n)
    return out


def _parse_representation(f: _Fields, name: str, d: dict, vm: dict) -> Representation:
    where = f"representations.{name}"
    d = f.obj(d, where)
    m_pixel = _PIXEL_NAME_RE.match(name)
    m_prompt = _PROMPT_NAME_RE.match(name)
    if not (m_pixel or m_prompt):
        raise f.fail(where, "a name 'pixel/h264/<kbps>', 'pixel/hevc/<kbps>' or "
                     "'prompt/<model>/r<rank>'", name)
    kind = f.str_(d, "kind", where)
    expected_kind = "pixel" if m_pixel else "prompt"
    if kind != expected_kind:
        raise f.fail(_join(where, "kind"), f"'{expected_kind}' (from the name)", kind)
    fps = vm["fps"]
    chunks_raw = f.list_(d, "chunks", where)
    if len(chunks_raw) != vm["n_chunks"]:
        raise f.fail(_join(where, "chunks"), f"{vm['n_chunks']} chunks (n_chunks)",
                     f"{len(chunks_raw)} chunks")
    chunks = []
    for i, c in enumerate(chunks_raw):
        w = f"{where}.chunks[{i}]"
        c = f.obj(c, w)
        index = f.int_(c, "index", w)
        if index != i:
            raise f.fail(_join(w, "index"), f"{i} (chunks in index order)", index)
        size = f.int_(c, "bytes", w, minimum=1)
        sha = f.str_(c, "sha256", w, _SHA256_RE, "64 lowercase hex digits")
        frames = f.int_(c, "frames", w, minimum=1)
        start, n_exp = chunk_frame_range(i, fps, vm["chunk_s"], vm["n_frames"])
        if frames != n_exp:
            raise f.fail(_join(w, "frames"), f"{n_exp} (frames {start}..{start + n_exp - 1})",
                         frames)
        duration_s = f.num(c, "duration_s", w, exclusive=True)
        if abs(duration_s - frames / fps) > 1e-3:
            raise f.fail(_join(w, "duration_s"), f"frames / fps = {frames / fps:.6g}",
                         duration_s)
        psnr = f.num(c, "psnr_db", w)
        ssim = f.num(c, "ssim", w, minimum=-1.0, maximum=1.0)
        path = f.str_(c, "path", w)
        if not _safe_rel_path(path):
            raise f.fail(_join(w, "path"), "a relative POSIX path inside the video directory "
                         "(no '..', no absolute path)", path)
        chunks.append(Chunk(index, size, sha, frames, duration_s, psnr, ssim, path))
    decode_cost = _parse_decode_cost(f, f.opt_obj(d, "decode_cost", where),
                                     _join(where, "decode_cost"))
    if m_pixel:
        codec = f.str_(d, "codec", where)
        if codec != m_pixel.group(1):
            raise f.fail(_join(where, "codec"), f"'{m_pixel.group(1)}' (from the name)", codec)
        kbps = f.num(d, "bitrate_kbps", where, exclusive=True)
        if round(kbps) != int(m_pixel.group(2)):
            raise f.fail(_join(where, "bitrate_kbps"), f"{m_pixel.group(2)} (from the name)",
                         kbps)
        container = f.str_(d, "container", where)
        return Representation(
            name=name, kind="pixel", chunks=tuple(chunks), target_kbps=kbps, codec=codec,
            container=container,
            encoder=FrozenMap(dict(f.opt_obj(d, "encoder", where))),
            decode_cost=FrozenMap(decode_cost))
    model = f.str_(d, "model", where)
    if model != m_prompt.group(1):
        raise f.fail(_join(where, "model"), f"'{m_prompt.group(1)}' (from the name)", model)
    rank = f.int_(d, "rank", where, minimum=1)
    if rank != int(m_prompt.group(2)):
        raise f.fail(_join(where, "rank"), f"{m_prompt.group(2)} (from the name)", rank)
    model_hash = d.get("model_hash")
    if model_hash is not None and not isinstance(model_hash, str):
        raise f.fail(_join(where, "model_hash"), "a string or null", model_hash)
    init_bytes = f.int_(d, "init_bytes", where) if "init_bytes" in d else 0
    if chunks and init_bytes > chunks[0].bytes:
        raise f.fail(_join(where, "init_bytes"),
                     f"<= chunk 0 bytes ({chunks[0].bytes}): init data is counted in chunk 0",
                     init_bytes)
    return Representation(
        name=name, kind="prompt", chunks=tuple(chunks), model=model, rank=rank,
        model_hash=model_hash, init_bytes=init_bytes,
        params=FrozenMap(dict(f.opt_obj(d, "params", where))),
        decode_cost=FrozenMap(decode_cost))


def parse_video_manifest(data: Any, source: str = "manifest.json") -> VideoManifest:
    """Validate a video manifest (bytes, str or parsed object) and build a ``VideoManifest``."""
    f = _Fields(source)
    d = f.obj(_as_json(data, source), "(top level)")
    version = _check_version(f, d)
    video = f.str_(d, "video", "", _VIDEO_ID_RE, "a video id of letters, digits, '_' or '-'")
    fps = f.num(d, "fps", "", exclusive=True)
    width = f.int_(d, "width", "", minimum=2)
    height = f.int_(d, "height", "", minimum=2)
    chunk_s = f.num(d, "chunk_s", "", exclusive=True)
    try:
        fpc = frames_per_chunk_of(fps, chunk_s)
    except ValueError:
        raise f.fail("chunk_s", "chunk_s * fps to be a whole number of frames", chunk_s) from None
    n_frames = f.int_(d, "n_frames", "", minimum=1)
    n_chunks = f.int_(d, "n_chunks", "", minimum=1)
    if n_chunks != math.ceil(n_frames / fpc):
        raise f.fail("n_chunks", f"ceil(n_frames / frames per chunk) = {math.ceil(n_frames / fpc)}",
                     n_chunks)
    duration_s = f.num(d, "duration_s", "", exclusive=True)
    if abs(duration_s - n_frames / fps) > 1e-3:
        raise f.fail("duration_s", f"n_frames / fps = {n_frames / fps:.6g}", duration_s)
    layout = {"fps": fps, "chunk_s": chunk_s, "n_frames": n_frames, "n_chunks": n_chunks}
    reps_raw = f.obj(f.get(d, "representations", ""), "representations")
    reps = {name: _parse_representation(f, name, r, layout) for name, r in reps_raw.items()}
    source_info = f.opt_obj(d, "source", "")
    return VideoManifest(
        video=video, fps=fps, width=width, height=height, chunk_s=chunk_s, n_chunks=n_chunks,
        n_frames=n_frames, duration_s=duration_s, representations=FrozenMap(reps),
        source=FrozenMap(dict(source_info)), schema_version=version)


def load_catalog(catalog_dir: str | os.PathLike, check_videos: bool = False) -> Catalog:
    """Load ``<catalog_dir>/catalog.json``.

    check_videos: also load every video manifest and check it agrees with the catalog.
    """
    root = Path(catalog_dir)
    path = root / CATALOG_FILE
    cat = parse_catalog(_read_json(path), source=str(path), root=root)
    if check_videos:
        for vid in cat.video_ids:
            cat.load_video(vid)
    return cat


def load_video_manifest(path: str | os.PathLike) -> VideoManifest:
    """Load and validate one ``videos/<id>/manifest.json``."""
    path = Path(path)
    vm = parse_video_manifest(_read_json(path), source=str(path))
    if path.parent.name != vm.video:
        raise ManifestError(f"{path}: field 'video': expected {path.parent.name!r} "
                            f"(the directory name), got {vm.video!r}")
    return vm


def _check_consistent(cat: Catalog, vm: VideoManifest, path: Path) -> None:
    entry = next(v for v in cat.videos if v.id == vm.video)
    for fld, want, got in (("fps", cat.fps, vm.fps), ("chunk_s", cat.chunk_s, vm.chunk_s),
                           ("width", cat.width, vm.width), ("height", cat.height, vm.height),
                           ("n_chunks", entry.n_chunks, vm.n_chunks)):
        if abs(float(want) - float(got)) > 1e-9:
            raise ManifestError(f"{path}: field '{fld}': expected {want} (as in catalog.json), "
                                f"got {got}")
    if abs(entry.duration_s - vm.duration_s) > 1e-3:
        raise ManifestError(f"{path}: field 'duration_s': expected {entry.duration_s} "
                            f"(as in catalog.json), got {vm.duration_s}")


# ----------------------------------------------------------------------------- writing


def _atomic_write_json(path: Path, obj: Any) -> None:
    """Write JSON to a temp file in the same directory, fsync, then rename over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(obj, fh, indent=1, sort_keys=False)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_catalog(catalog_dir: str | os.PathLike, catalog: Catalog) -> Path:
    """Validate and write ``catalog.json`` atomically; returns its path."""
    path = Path(catalog_dir) / CATALOG_FILE
    obj = catalog.to_json()
    parse_catalog(obj, source=f"{path} (being written)")
    _atomic_write_json(path, obj)
    return path


def write_video_manifest(path: str | os.PathLike, manifest: VideoManifest) -> Path:
    """Validate and write one video manifest atomically; returns its path."""
    path = Path(path)
    obj = manifest.to_json()
    parse_video_manifest(obj, source=f"{path} (being written)")
    _atomic_write_json(path, obj)
    return path


@contextlib.contextmanager
def manifest_lock(path: str | os.PathLike) -> Iterator[None]:
    """Exclusive lock for a read-modify-write of one manifest (a sibling ``.lock`` file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / f".{path.name}.lock", "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def put_representation(path: str | os.PathLike, rep: Representation) -> VideoManifest:
    """Add or replace one representation in a video manifest, atomically and under a lock.

    The chunk files the representation names must already exist under the video directory
    with the recorded size. Returns the manifest as written.
    """
    path = Path(path)
    with manifest_lock(path):
        vm = load_video_manifest(path)
        for c in rep.chunks:
            f = path.parent / c.path
            try:
                size = f.stat().st_size
            except FileNotFoundError:
                raise ManifestError(f"{path}: representation {rep.name!r} chunk {c.index}: "
                                    f"file {f} does not exist") from None
            if size != c.bytes:
                raise ManifestError(f"{path}: representation {rep.name!r} chunk {c.index}: "
                                    f"file {f} has {size} bytes, manifest says {c.bytes}")
        reps = dict(vm.representations)
        reps[rep.name] = rep
        new = replace(vm, representations=FrozenMap(reps))
        write_video_manifest(path, new)
        return new


def remove_representation(path: str | os.PathLike, name: str) -> VideoManifest:
    """Drop one representation from a video manifest (its chunk files are left alone)."""
    path = Path(path)
    with manifest_lock(path):
        vm = load_video_manifest(path)
        reps = dict(vm.representations)
        reps.pop(name, None)
        new = replace(vm, representations=FrozenMap(reps))
        write_video_manifest(path, new)
        return new


# ----------------------------------------------------------------------------- quality


def quality_equivalent_kbps(vm: VideoManifest, index: int, quality: float,
                            metric: str = "ssim", codec: str = "h264") -> float:
    """The ``codec`` bitrate that gives ``quality`` on chunk ``index`` (kbps).

    Interpolates linearly on that chunk's pixel ladder (quality made non-decreasing in
    bitrate first). Below the lowest rung it extrapolates along the line through the two
    lowest rungs, floored at 0; above the highest rung it returns the highest bitrate:
    the ladder says nothing about bitrates it does not hold.
    metric: ``ssim`` or ``psnr_db``.
    """
    if metric not in ("ssim", "psnr_db"):
        raise ValueError(f"metric must be 'ssim' or 'psnr_db', got {metric!r}")
    ladder = vm.pixel_ladder(codec)
    if not ladder:
        raise KeyError(f"video {vm.video!r} has no pixel/{codec} ladder")
    pts: list[tuple[float, float]] = []
    best = -math.inf
    for rep in ladder:
        best = max(best, float(getattr(rep.chunks[index], metric)))
        pts.append((rep.bitrate_kbps, best))
    if len(pts) == 1 or quality >= pts[-1][1]:
        # One rung carries no slope to extrapolate with.
        return pts[-1][0]
    if quality <= pts[0][1]:
        (r0, q0), (r1, q1) = pts[0], pts[1]
        if q1 <= q0:
            return r0
        return max(0.0, r0 + (quality - q0) * (r1 - r0) / (q1 - q0))
    for (r0, q0), (r1, q1) in itertools.pairwise(pts):
        if q0 <= quality <= q1:
            if q1 == q0:
                return r0
            return r0 + (quality - q0) * (r1 - r0) / (q1 - q0)
    return pts[-1][0]


def chunk_quality_mbps(vm: VideoManifest, name: str, metric: str = "ssim",
                       codec: str = "h264") -> tuple[float, ...]:
    """Per-chunk quality in Mbps-equivalent (DESIGN.md QoE ``q``).

    Pixel: the nominal bitrate. Prompt: the quality-equivalent ``codec`` bitrate.
    """
    rep = vm.representation(name)
    if rep.kind == "pixel":
        return tuple(rep.bitrate_kbps / 1000.0 for _ in rep.chunks)
    return tuple(
        quality_equivalent_kbps(vm, c.index, float(getattr(c, metric)), metric, codec) / 1000.0
        for c in rep.chunks)
