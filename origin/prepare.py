"""Catalog preparation: source videos -> pixel ladder chunks + manifests + decode-cost profile.

``prepare_catalog(cfg)`` is what ``testbed prepare`` runs:
1. plan the videos (synthetic from the seed, or the user's files);
2. per video (in parallel processes): render/read the source once, feed it chunk by chunk
   to one encoder per ladder rung, decode every chunk it produced, check its frame count,
   measure PSNR/SSIM against the source, write the chunk files and the video manifest;
3. measure decode cost per representation in one process, one decode at a time (so the
   figures are not disturbed by the parallel encoding), and store it in the manifests;
4. write ``catalog.json``.

Re-running on an existing catalog is idempotent: a representation whose source,
encoder settings and chunk files (size and sha256) all match is kept as it is; prompt
representations survive as long as the source is unchanged.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import multiprocessing
import os
import platform
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from codec import pixel, quality
from origin import manifest as mf
from origin import source as src

VIDEO_EXTENSIONS = (".mp4", ".mkv", ".mov", ".webm", ".avi", ".ts", ".m4v", ".flv", ".y4m")


class PrepareError(ValueError):
    """Bad preparation input (config, source files, an incompatible existing catalog)."""


@dataclass(frozen=True)
class PrepareConfig:
    """Everything ``testbed prepare`` needs.

    out: catalog directory. videos_dir: the user's videos (None: synthetic).
    count: number of synthetic videos (or at most this many user files when given).
    duration_s: every video this long (None: synthetic durations drawn in
    [min_duration_s, max_duration_s]; user files keep their length, capped at max).
    ladder_kbps: target bitrates (kbps) for each codec in ``codecs``.
    jobs: parallel worker processes. decode_samples: chunks decoded per representation for
    the decode-cost profile.
    """

    out: Path
    videos_dir: Path | None = None
    count: int = 8
    duration_s: float | None = None
    min_duration_s: float = 10.0
    max_duration_s: float = 40.0
    seed: int = 0
    width: int = 256
    height: int = 256
    fps: float = 30.0
    chunk_s: float = 1.0
    codecs: tuple[str, ...] = ("h264", "hevc")
    ladder_kbps: tuple[int, ...] = (100, 250, 500, 1000)
    preset: str = "medium"
    jobs: int = field(default_factory=lambda: os.cpu_count() or 1)
    decode_samples: int = 10

    def validate(self) -> None:
        if self.count < 1:
            raise PrepareError(f"count: expected >= 1, got {self.count}")
        if self.width < 16 or self.height < 16 or self.width % 2 or self.height % 2:
            raise PrepareError(f"size: expected even width/height >= 16, got "
                               f"{self.width}x{self.height}")
        if not (0 < self.fps <= 120):
            raise PrepareError(f"fps: expected 0 < fps <= 120, got {self.fps}")
        try:
            mf.frames_per_chunk_of(self.fps, self.chunk_s)
        except ValueError:
            raise PrepareError(f"chunk_s: chunk_s * fps must be a whole number of frames, got "
                               f"{self.chunk_s} * {self.fps}") from None
        if self.duration_s is not None and self.duration_s * self.fps < 1:
            raise PrepareError(f"duration_s: expected at least one frame, got {self.duration_s}")
        if not (0 < self.min_duration_s <= self.max_duration_s):
            raise PrepareError("durations: expected 0 < min_duration_s <= max_duration_s, got "
                               f"{self.min_duration_s}, {self.max_duration_s}")
        if not self.codecs:
            raise PrepareError("codecs: expected at least one of h264, hevc")
        for c in self.codecs:
            if c not in pixel.ENCODERS:
                raise PrepareError(f"codecs: unknown codec {c!r}; known: "
                                   f"{', '.join(pixel.ENCODERS)}")
        if not self.ladder_kbps or any(k <= 0 for k in self.ladder_kbps):
            raise PrepareError(f"ladder: expected positive bitrates (kbps), got "
                               f"{list(self.ladder_kbps)}")
        if self.jobs < 1:
            raise PrepareError(f"jobs: expected >= 1, got {self.jobs}")
        if self.videos_dir is not None and not Path(self.videos_dir).is_dir():
            raise PrepareError(f"videos: {self.videos_dir} is not a directory")


@dataclass(frozen=True)
class VideoPlan:
    video_id: str
    source: dict
    n_frames: int


@dataclass
class PrepareReport:
    """What a run did (for the CLI's summary line and for tests)."""

    videos: int = 0
    encoded: list[str] = field(default_factory=list)   # "video rep" pairs encoded
    reused: list[str] = field(default_factory=list)    # "video rep" pairs kept as they were
    chunks_written: int = 0
    elapsed_s: float = 0.0


# ----------------------------------------------------------------------------- progress


class Progress:
    """A progress bar on stderr: redrawn in place on a terminal, a line per 10 % otherwise."""

    def __init__(self, total: int, label: str, enabled: bool = True, stream=None):
        self.total = max(1, total)
        self.done = 0
        self.label = label
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.t0 = time.monotonic()
        self._last_decile = -1

    def advance(self, n: int = 1) -> None:
        self.done = min(self.total, self.done + n)
        if not self.enabled:
            return
        frac = self.done / self.total
        elapsed = time.monotonic() - self.t0
        eta = elapsed / frac - elapsed if frac > 0 else 0.0
        if self.tty:
            bar = "#" * int(30 * frac)
            self.stream.write(f"\r{self.label} [{bar:<30}] {self.done}/{self.total} "
                              f"{elapsed:5.0f}s eta {eta:4.0f}s")
            if self.done == self.total:
                self.stream.write("\n")
            self.stream.flush()
        else:
            decile = int(frac * 10)
            if decile != self._last_decile:
                self._last_decile = decile
                print(f"{self.label}: {self.done}/{self.total} ({frac:.0%}) {elapsed:.0f}s",
                      file=self.stream, flush=True)


# ----------------------------------------------------------------------------- planning


def _slug(stem: str) -> str:
    s = re.sub(r"[^A-Za-z0-9_-]+", "-", stem).strip("-_")[:48]
    return s or "video"


def plan_videos(cfg: PrepareConfig) -> list[VideoPlan]:
    """Decide ids, sources and frame counts, deterministically from the config."""
    plans = []
    if cfg.videos_dir is None:
        rng = np.random.default_rng([int(cfg.seed), 0xD0])
        for i in range(cfg.count):
            if cfg.duration_s is not None:
                d = cfg.duration_s
            else:
                # Short-video lengths are right-skewed: log-normal around ~18 s, clipped.
                d = float(np.clip(rng.lognormal(math.log(18.0), 0.45), cfg.min_duration_s,
                                  cfg.max_duration_s))
            n_frames = max(1, round(d * cfg.fps))
            plans.append(VideoPlan(f"v{i:03d}", src.synthetic_spec(cfg.seed, i, n_frames,
                                                                    cfg.fps), n_frames))
        return plans
    files = sorted(p for p in Path(cfg.videos_dir).iterdir()
                   if p.is_file() and not p.name.startswith("."))
    seen: set[str] = set()
    skipped: list[str] = []
    for p in files:
        if len(plans) >= cfg.count:
            break
        try:
            d = src.probe_file(p, cfg.duration_s or cfg.max_duration_s)
        except src.SourceError as exc:
            # A file named like a video must be one; any other file is used when PyAV
            # reads a video stream from it (any container) and skipped, said, otherwise.
            if p.suffix.lower() in VIDEO_EXTENSIONS:
                raise PrepareError(str(exc)) from None
            skipped.append(p.name)
            continue
        vid = _slug(p.stem)
        base, k = vid, 1
        while vid in seen:
            k += 1
            vid = f"{base}-{k}"
        seen.add(vid)
        plans.append(VideoPlan(vid, src.file_spec(p), max(1, round(d * cfg.fps))))
    if skipped:
        print(f"prepare: skipped {len(skipped)} file(s) of {cfg.videos_dir} that PyAV cannot "
              f"read as video: {', '.join(skipped[:5])}{' ...' if len(skipped) > 5 else ''}",
              file=sys.stderr)
    if not plans:
        raise PrepareError(f"videos: no file in {cfg.videos_dir} that PyAV reads as video")
    return plans


# ----------------------------------------------------------------------------- one video


def _file_ok(path: Path, chunk: mf.Chunk) -> bool:
    try:
        if path.stat().st_size != chunk.bytes:
            return False
        return hashlib.sha256(path.read_bytes()).hexdigest() == chunk.sha256
    except OSError:
        return False


def _same_source(a: dict, b: dict) -> bool:
    def keys(d):
        return {k: v for k, v in d.items() if k != "frames_sha256"}
    return keys(dict(a)) == keys(dict(b))


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _reusable(old: mf.Representation | None, encoder: dict, vdir: Path) -> bool:
    if old is None or dict(old.encoder) != encoder:
        return False
    return all(_file_ok(vdir / c.path, c) for c in old.chunks)


_progress_queue = None


def _init_worker(queue) -> None:
    global _progress_queue
    _progress_queue = queue


def prepare_video(cfg: PrepareConfig, plan: VideoPlan,
                  tick: Callable[[int], None] | None = None) -> dict:
    """Encode (or reuse) every pixel representation of one video; write its manifest.

    tick: called with a number of finished chunk-representations, for progress.
    Returns {"encoded": [...], "reused": [...], "chunks_written": n}.
    """
    if tick is None:
        def tick(n: int) -> None:
            if _progress_queue is not None:
                _progress_queue.put(n)
    vdir = mf.video_dir(cfg.out, plan.video_id)
    mpath = vdir / mf.MANIFEST_FILE
    fpc = mf.frames_per_chunk_of(cfg.fps, cfg.chunk_s)
    n_chunks = math.ceil(plan.n_frames / fpc)
    old_vm = None
    if mpath.exists():
        try:
            old_vm = mf.load_video_manifest(mpath)
        except mf.ManifestError:
            old_vm = None  # unreadable: rebuilt from scratch below
    layout_same = old_vm is not None and (
        old_vm.fps, old_vm.chunk_s, old_vm.width, old_vm.height, old_vm.n_frames) == (
        cfg.fps, cfg.chunk_s, cfg.width, cfg.height, plan.n_frames)
    source_same = layout_same and _same_source(old_vm.source, plan.source)

    wanted = [(c, k) for c in cfg.codecs for k in cfg.ladder_kbps]
    keep: dict[str, mf.Representation] = {}
    todo: list[tuple[str, int]] = []
    for codec, kbps in wanted:
        name = mf.pixel_name(codec, kbps)
        enc = pixel.encoder_settings(codec, fpc, cfg.preset)
        old = old_vm.representations.get(name) if source_same else None
        if _reusable(old, enc, vdir):
            keep[name] = old
            tick(n_chunks)
        else:
            todo.append((codec, kbps))
    if source_same:
        # Prompt representations depend only on the source; keep them.
        for name, rep in old_vm.representations.items():
            if rep.kind == "prompt":
                keep[name] = rep

    frames_sha = old_vm.source.get("frames_sha256") if source_same else None
    new_reps: dict[str, mf.Representation] = {}
    written = 0
    if todo or frames_sha is None:
        encoders = {mf.pixel_name(c, k): pixel.PixelEncoder(c, k, cfg.width, cfg.height, cfg.fps,
                                                            fpc, cfg.preset) for c, k in todo}
        codec_of = {mf.pixel_name(c, k): c for c, k in todo}
        chunks: dict[str, list[mf.Chunk]] = {n: [] for n in encoders}
        pending: dict[int, np.ndarray] = {}
        digest = src.frames_digest()

        def consume(name: str, datas: list[bytes]) -> None:
            nonlocal written
            codec = codec_of[name]
            for data in datas:
                i = len(chunks[name])
                ref = pending[i]
                try:
                    out = pixel.decode_pixel_chunk(data, codec, expected_frames=ref.shape[0])
                except pixel.ChunkDecodeError as exc:
                    raise PrepareError(f"{plan.video_id} {name} chunk {i}: encoder output does "
                                       f"not decode: {exc}") from None
                rel = f"{name}/{i:06d}.{pixel.EXTENSIONS[codec]}"
                _write_atomic(vdir / rel, data)
                written += 1
                chunks[name].append(mf.Chunk(
                    index=i, bytes=len(data), sha256=hashlib.sha256(data).hexdigest(),
                    frames=int(out.shape[0]), duration_s=out.shape[0] / cfg.fps,
                    psnr_db=round(quality.psnr_db(ref, out), 4),
                    ssim=round(quality.ssim(ref, out), 6), path=rel))
                tick(1)

        def drop_done() -> None:
            low = min((len(c) for c in chunks.values()), default=len(pending) + 10**9)
            for i in [i for i in pending if i < low]:
                del pending[i]

        for i, frames in enumerate(src.iter_source_chunks(plan.source, cfg.width, cfg.height,
                                                          cfg.fps, plan.n_frames, fpc)):
            digest.update(frames.tobytes())
            pending[i] = frames
            yuv = pixel.yuv_frames(frames, cfg.width, cfg.height) if encoders else []
            for name, enc in encoders.items():
                consume(name, enc.add(yuv))
            drop_done()
        for name, enc in encoders.items():
            consume(name, enc.finish())
        for name, cl in chunks.items():
            if len(cl) != n_chunks:
                raise PrepareError(f"{plan.video_id} {name}: encoder produced {len(cl)} chunks, "
                                   f"expected {n_chunks}")
            codec = codec_of[name]
            new_reps[name] = mf.Representation(
                name=name, kind="pixel", chunks=tuple(cl),
                target_kbps=float(int(name.rsplit("/", 1)[1])), codec=codec,
                container=pixel.CONTAINER,
                encoder=mf.FrozenMap(pixel.encoder_settings(codec, fpc, cfg.preset)))
        frames_sha = digest.hexdigest()
        if source_same and old_vm.source.get("frames_sha256") not in (None, frames_sha):
            # Same description, different pixels (another numpy/scikit-image build):
            # prompt representations fitted to the old frames no longer apply.
            keep = {n: r for n, r in keep.items() if r.kind != "prompt"}

    # Pixel representations no longer in the ladder: drop them and their files.
    if old_vm is not None:
        for name, rep in old_vm.representations.items():
            if rep.kind == "pixel" and name not in keep and name not in new_reps:
                shutil.rmtree(vdir / name, ignore_errors=True)
    reps = {**keep, **new_reps}
    vm = mf.VideoManifest(
        video=plan.video_id, fps=cfg.fps, width=cfg.width, height=cfg.height,
        chunk_s=cfg.chunk_s, n_chunks=n_chunks, n_frames=plan.n_frames,
        duration_s=plan.n_frames / cfg.fps, representations=mf.FrozenMap(reps),
        source=mf.FrozenMap({**plan.source, "frames_sha256": frames_sha}))
    with mf.manifest_lock(mpath):
        mf.write_video_manifest(mpath, vm)
    return {"encoded": sorted(new_reps), "reused": sorted(n for n, r in keep.items()
                                                          if r.kind == "pixel"),
            "chunks_written": written}


# ----------------------------------------------------------------------------- decode cost


def machine_description() -> str:
    """CPU model and count, for ``measured_on``."""
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{model}, {os.cpu_count()} cpus, {platform.machine()}"


def measure_decode_cost(vdir: Path, rep: mf.Representation, samples: int) -> mf.DecodeCost:
    """Time ``decode_pixel_chunk`` on up to ``samples`` evenly spaced chunks (one thread)."""
    import av

    n = len(rep.chunks)
    idx = sorted({round(i * (n - 1) / max(1, samples - 1)) for i in range(min(samples, n))})
    datas = [(vdir / rep.chunks[i].path).read_bytes() for i in idx]
    pixel.decode_pixel_chunk(datas[0], rep.codec)  # warm-up: first call loads the codec
    times = []
    for data in datas:
        t0 = time.perf_counter()
        pixel.decode_pixel_chunk(data, rep.codec)
        times.append(time.perf_counter() - t0)
    arr = np.array(times)
    return mf.DecodeCost(
        s_per_chunk_mean=round(float(arr.mean()), 6),
        s_per_chunk_p95=round(float(np.percentile(arr, 95)), 6),
        measured_on=f"{machine_description()}; PyAV {av.__version__}, 1 decode thread, "
                    "RGB output",
        n_samples=len(times))


def _add_decode_costs(cfg: PrepareConfig, video_id: str, force: bool) -> int:
    mpath = mf.video_manifest_path(cfg.out, video_id)
    with mf.manifest_lock(mpath):
        vm = mf.load_video_manifest(mpath)
        reps = dict(vm.representations)
        n = 0
        for name, rep in reps.items():
            if rep.kind != "pixel" or ("cpu" in rep.decode_cost and not force):
                continue
            cost = measure_decode_cost(mpath.parent, rep, cfg.decode_samples)
            reps[name] = replace(rep, decode_cost=mf.FrozenMap({**rep.decode_cost,
                                                                     "cpu": cost}))
            n += 1
        if n:
            mf.write_video_manifest(mpath, replace(vm, representations=mf.FrozenMap(reps)))
    return n


# ----------------------------------------------------------------------------- catalog


def _check_existing(cfg: PrepareConfig) -> None:
    path = Path(cfg.out) / mf.CATALOG_FILE
    if not path.exists():
        return
    try:
        cat = mf.load_catalog(cfg.out)
    except mf.ManifestError as exc:
        raise PrepareError(f"existing catalog is not readable ({exc}); choose another --out "
                           "or remove it") from None
    if (cat.fps, cat.chunk_s, cat.width, cat.height) != (cfg.fps, cfg.chunk_s, cfg.width,
                                                         cfg.height):
        raise PrepareError(
            f"{path}: existing catalog has {cat.width}x{cat.height} at {cat.fps} fps with "
            f"{cat.chunk_s}-s chunks, this run asks for {cfg.width}x{cfg.height} at {cfg.fps} "
            f"fps with {cfg.chunk_s}-s chunks; choose another --out")


def prepare_catalog(cfg: PrepareConfig, progress: bool = True) -> PrepareReport:
    """Build or update the catalog in ``cfg.out``; returns what was done."""
    t0 = time.monotonic()
    cfg.validate()
    missing = [c for c in cfg.codecs if c not in pixel.available_codecs()]
    if missing:
        raise PrepareError(f"codecs: encoder for {', '.join(missing)} is not in this PyAV "
                           "build; pass --codecs with the others")
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    _check_existing(cfg)
    plans = plan_videos(cfg)
    fpc = mf.frames_per_chunk_of(cfg.fps, cfg.chunk_s)
    total = sum(math.ceil(p.n_frames / fpc) for p in plans) * len(cfg.codecs) * len(
        cfg.ladder_kbps)
    bar = Progress(total, "prepare: encode", enabled=progress)
    report = PrepareReport(videos=len(plans))

    def record(plan: VideoPlan, res: dict) -> None:
        report.encoded += [f"{plan.video_id} {n}" for n in res["encoded"]]
        report.reused += [f"{plan.video_id} {n}" for n in res["reused"]]
        report.chunks_written += res["chunks_written"]

    jobs = min(cfg.jobs, len(plans))
    if jobs <= 1:
        for plan in plans:
            record(plan, prepare_video(cfg, plan, tick=bar.advance))
    else:
        ctx = multiprocessing.get_context("fork")
        queue = ctx.Queue()
        with ProcessPoolExecutor(jobs, mp_context=ctx, initializer=_init_worker,
                                 initargs=(queue,)) as pool:
            futs = {pool.submit(prepare_video, cfg, plan): plan for plan in plans}
            pending = set(futs)
            while pending:
                done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
                while not queue.empty():
                    bar.advance(queue.get())
                for f in done:
                    record(futs[f], f.result())
            while not queue.empty():
                bar.advance(queue.get())

    cost_bar = Progress(len(plans), "prepare: decode cost", enabled=progress)
    for plan in plans:
        # Freshly encoded representations have no cost yet; reused ones keep theirs.
        _add_decode_costs(cfg, plan.video_id, force=False)
        cost_bar.advance()

    videos = tuple(mf.CatalogVideo(p.video_id, p.n_frames / cfg.fps,
                                   math.ceil(p.n_frames / fpc)) for p in plans)
    cat = mf.Catalog(chunk_s=cfg.chunk_s, fps=cfg.fps, width=cfg.width, height=cfg.height,
                     videos=videos)
    mf.write_catalog(out, cat)
    mf.load_catalog(out, check_videos=True)
    report.elapsed_s = time.monotonic() - t0
    return report
