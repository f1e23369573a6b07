"""Prompt representations for a catalog (``testbed prepare --prompt-ranks``).

``add_prompt_representations(catalog_dir, ranks, model="local", jobs=N, progress=True)``
fits every chunk of every video at each rank (parallel over chunks, one torch thread per
worker process), writes ``videos/<id>/prompt/<model>/r<rank>/<index:06d>.pbp`` plus a
sidecar ``<index:06d>.json`` (the fit's figures and settings), then puts
``prompt/<model>/r<rank>`` into the video's manifest with bytes, sha256, PSNR/SSIM against
the source frames (``codec.quality``, as the pixel ladder), the model hash, ``init_bytes``
(the initial latent carried in chunk 0) and the decode cost measured here.

Resumable: a chunk whose file and sidecar exist and match (sha256, model hash, settings) is
not fitted again, so an interrupted run continues where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import time
import zlib
from pathlib import Path

import numpy as np

from codec.profiles import DECODE_THREADS

# origin.manifest's prompt model-name rule (prompt/<model>/r<rank>)
_MODEL_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

EXT = "pbp"
# Fitting options (passed to codec.encode.encode_chunk) and their defaults.
FIT_DEFAULTS = {"key_interval": 10, "refine_steps": 0, "lr": 0.02, "target_psnr_db": None,
                "mse_weight": 1.0, "ssim_weight": 0.005, "context_l1_weight": 0.0,
                "lr_min": None}
DEFAULTS = {**FIT_DEFAULTS, "decode_threads": DECODE_THREADS, "decode_samples": 5}
# Settings every sidecar has held; the later ones enter only when not at their default,
# so catalogs fitted before those options existed stay reusable.
_ALWAYS = ("key_interval", "refine_steps", "lr")

_GEN = None  # per worker process


def _settings(gen_hash: str, kind: str, rank: int, opts: dict) -> dict:
    out = {"generator": kind, "model_hash": gen_hash, "rank": rank}
    out.update({k: opts[k] for k in FIT_DEFAULTS
                if k in _ALWAYS or opts[k] != FIT_DEFAULTS[k]})
    return out


def check_options(opts: dict) -> None:
    """Refuse fitting/decode options ``encode_chunk`` would reject mid-run, before any work."""
    def bad(name, expected):
        raise ValueError(f"prompt option {name}: expected {expected}, got {opts[name]!r}")

    def is_int(v):
        return isinstance(v, int) and not isinstance(v, bool)

    def is_num(v):
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

    for name, lo in (("key_interval", 1), ("refine_steps", 0), ("decode_threads", 1),
                     ("decode_samples", 1)):
        if not is_int(opts[name]) or opts[name] < lo:
            bad(name, f"an integer >= {lo}")
    for name in ("mse_weight", "ssim_weight", "context_l1_weight"):
        if not is_num(opts[name]) or opts[name] < 0:
            bad(name, "a finite number >= 0")
    if not is_num(opts["lr"]) or opts["lr"] <= 0:
        bad("lr", "a finite number > 0")
    if opts["lr_min"] is not None and not (is_num(opts["lr_min"])
                                           and 0 < opts["lr_min"] <= opts["lr"]):
        bad("lr_min", f"None or a number in (0, lr = {opts['lr']}]")
    t = opts["target_psnr_db"]
    if t is not None:
        if not is_num(t) or not 0 < t <= 100:
            bad("target_psnr_db", "None or a number of dB in (0, 100]")
        if opts["refine_steps"] == 0:
            raise ValueError("prompt option target_psnr_db stops refinement early, so it needs "
                             "refine_steps > 0 (with 0 steps there is nothing to stop)")


def model_name(model) -> str:
    """The manifest's model name for ``model`` (``prompt/<name>/r<rank>``), after checking
    that ``model`` exists (``codec.generators.model_kind``; imports torch).

    ``local`` and the committed checkpoint -> ``local``; a directory -> its name; a
    ``local.safetensors`` file -> its directory's name (as passing the directory); another
    ``.safetensors`` file -> its stem; ``_`` becomes ``-``. A name that is not a valid
    manifest model name, or a different checkpoint that would be called ``local``, raises
    ``ValueError``: players map the name to the checkpoint (``prompt_models``), so it must
    not pass for the committed model.
    """
    from codec import weights
    from codec.generators import model_kind

    model_kind(model)  # FileNotFoundError saying what was expected
    if model in (None, "local"):
        return "local"
    p = Path(model)
    if p.resolve() == weights.default_paths()[0].resolve():
        return "local"
    if p.is_dir():
        if (p / "local.safetensors").resolve() == weights.default_paths()[0].resolve():
            return "local"
        name = p.resolve().name
    elif p.name == f"{weights.DEFAULT_NAME}.safetensors":
        name = p.resolve().parent.name
    else:
        name = p.stem
    name = name.replace("_", "-")
    if not _MODEL_NAME_RE.match(name):
        raise ValueError(f"model {str(model)!r}: its manifest name {name!r} must start with a "
                         f"letter or digit and hold only letters, digits, '.', '_' or '-' "
                         f"(64 at most); rename the file or directory")
    if name == "local":
        raise ValueError(f"model {str(model)!r} would be named 'local' in the manifest, the "
                         f"committed model's name; rename its file or directory")
    return name


def _chunk_seed(video: str, index: int) -> int:
    return zlib.crc32(f"{video}/{index}".encode())


def _init_worker(model: str) -> None:
    global _GEN
    import torch

    torch.set_num_threads(1)
    from codec.generators import load_generator

    _GEN = load_generator(model)


def _fit_one(task: tuple) -> dict:
    """Fit one (video, rank, chunk) in a worker; writes the chunk file and its sidecar."""
    catalog_dir, video, rank, index, opts, rel = task
    from codec.encode import encode_chunk
    from origin import manifest as mf
    from origin.source import read_source_chunk

    vdir = mf.video_dir(catalog_dir, video)
    vm = mf.load_video_manifest(vdir / mf.MANIFEST_FILE)
    frames = read_source_chunk(vm, index)
    data, info = encode_chunk(_GEN, frames, rank, key_interval=opts["key_interval"],
                              steps=opts["refine_steps"], lr=opts["lr"],
                              target_psnr_db=opts["target_psnr_db"],
                              mse_weight=opts["mse_weight"], ssim_weight=opts["ssim_weight"],
                              context_l1_weight=opts["context_l1_weight"],
                              lr_min=opts["lr_min"], seed=_chunk_seed(video, index),
                              with_init=index == 0)
    path = vdir / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    side = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data),
            "frames": int(frames.shape[0]), "psnr_db": round(info.psnr_db, 4),
            "ssim": round(info.ssim, 6), "psnr_start_db": round(info.psnr_start_db, 4),
            "init_bytes": info.init_bytes, "fit_s": round(info.seconds, 3),
            "steps": info.steps, "settings": _settings(_GEN.model_hash, _GEN.kind, rank, opts)}
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    sp = path.with_suffix(".json")
    sp.with_name(sp.name + ".tmp").write_text(json.dumps(side))
    os.replace(sp.with_name(sp.name + ".tmp"), sp)
    return {"video": video, "rank": rank, "index": index, **side}


def _reusable(path: Path, settings: dict) -> dict | None:
    try:
        side = json.loads(path.with_suffix(".json").read_text())
        data = path.read_bytes()
    except (OSError, ValueError):
        return None
    if side.get("settings") != settings or side.get("sha256") != hashlib.sha256(data).hexdigest():
        return None
    return side


def measure_decode_cost(decoder, datas: list[bytes], threads: int):
    """Mean and p95 seconds per chunk over ``datas`` (after one warm-up decode)."""
    import torch

    from origin import manifest as mf
    from origin.prepare import machine_description

    decoder.decode_chunk(datas[0])
    times = []
    for d in datas:
        t0 = time.perf_counter()
        decoder.decode_chunk(d)
        times.append(time.perf_counter() - t0)
    arr = np.array(times)
    return mf.DecodeCost(
        s_per_chunk_mean=round(float(arr.mean()), 6),
        s_per_chunk_p95=round(float(np.percentile(arr, 95)), 6),
        measured_on=f"{machine_description()}; torch {torch.__version__}, {threads} threads, "
                    f"prompt decoder {decoder.gen.kind}", n_samples=len(times))


def add_prompt_representations(catalog_dir, ranks, model: str = "local", jobs: int | None = None,
                               progress: bool = True, **options) -> dict:
    """Add ``prompt/<model>/r<rank>`` for every video and rank; returns a summary dict.

    catalog_dir: a catalog made by ``testbed prepare``. ranks: prompt ranks (1..255).
    model: ``local``, a local-model checkpoint (``.safetensors`` or a directory holding
    ``local.safetensors``) or an sd-turbo diffusers directory; the manifest's model name is
    ``model_name(model)``. jobs: worker processes (default all CPUs). options
    (``DEFAULTS``, checked by ``check_options``): key_interval (10), refine_steps (0: the
    amortised start only), lr (0.02), lr_min (lr/100), target_psnr_db (None: no early
    stop), mse_weight (1), ssim_weight (0.005), context_l1_weight (0), decode_threads
    (``codec.profiles.DECODE_THREADS`` = 2, recorded in the representation's ``params``
    next to ``decode_cost``), decode_samples (5 chunks timed per representation).
    """
    import multiprocessing as mp

    from origin import manifest as mf
    from origin.prepare import Progress

    opts = dict(DEFAULTS)
    unknown = set(options) - set(opts)
    if unknown:
        raise ValueError(f"unknown prompt options {sorted(unknown)}; known: {sorted(opts)}")
    opts.update(options)
    check_options(opts)
    ranks = [int(r) for r in ranks]
    if not ranks or any(not 1 <= r <= 255 for r in ranks):
        raise ValueError(f"ranks: expected integers in 1..255, got {ranks}")
    name_model = model_name(model)
    cat = mf.load_catalog(catalog_dir)
    # Workers are spawned, not forked: a fork after torch started its thread pool can hang.
    # The model hash decides whether old chunks still apply; a worker reports it.
    ctx = mp.get_context("spawn")
    with ctx.Pool(1, initializer=_init_worker, initargs=(model,)) as pool:
        gen_hash, kind = pool.apply(_gen_identity)
    tasks, done = [], []
    for v in cat.videos:
        for r in ranks:
            settings = _settings(gen_hash, kind, r, opts)
            for i in range(v.n_chunks):
                rel = f"prompt/{name_model}/r{r}/{i:06d}.{EXT}"
                path = mf.video_dir(catalog_dir, v.id) / rel
                side = _reusable(path, settings)
                if side is None:
                    tasks.append((str(catalog_dir), v.id, r, i, opts, rel))
                else:
                    done.append({"video": v.id, "rank": r, "index": i, **side})
    bar = Progress(len(tasks), "prompt chunks", enabled=progress)
    t0 = time.perf_counter()
    jobs = max(1, min(jobs or os.cpu_count() or 1, len(tasks) or 1))
    if tasks:
        with ctx.Pool(jobs, initializer=_init_worker, initargs=(model,)) as pool:
            for res in pool.imap_unordered(_fit_one, tasks):
                done.append(res)
                bar.advance()
    fit_s = time.perf_counter() - t0
    # Manifests, then decode cost (one process, after the fitting, so timings are quiet).
    from codec.decode import load_decoder

    decoder = load_decoder(model, device="cpu", threads=opts["decode_threads"])
    by = {}
    for d in done:
        by.setdefault((d["video"], d["rank"]), []).append(d)
    summary = {"chunks_fitted": len(tasks), "chunks_reused": len(done) - len(tasks),
               "fit_s": round(fit_s, 1), "representations": {}}
    for v in cat.videos:
        vdir = mf.video_dir(catalog_dir, v.id)
        vm = mf.load_video_manifest(vdir / mf.MANIFEST_FILE)
        for r in ranks:
            rows = sorted(by[(v.id, r)], key=lambda d: d["index"])
            name = mf.prompt_name(name_model, r)
            chunks = tuple(mf.Chunk(
                index=d["index"], bytes=d["bytes"], sha256=d["sha256"], frames=d["frames"],
                duration_s=d["frames"] / vm.fps, psnr_db=d["psnr_db"], ssim=d["ssim"],
                path=f"prompt/{name_model}/r{r}/{d['index']:06d}.{EXT}") for d in rows)
            n = len(chunks)
            k = min(opts["decode_samples"], n)
            idx = sorted({round(i * (n - 1) / max(1, k - 1)) for i in range(k)})
            cost = measure_decode_cost(decoder, [(vdir / chunks[i].path).read_bytes()
                                                 for i in idx], opts["decode_threads"])
            rep = mf.Representation(
                name=name, kind="prompt", chunks=chunks, model=name_model, rank=r,
                model_hash=gen_hash, init_bytes=int(rows[0]["init_bytes"]),
                params=mf.FrozenMap({**_settings(gen_hash, kind, r, opts),
                                     "decode_threads": opts["decode_threads"],
                                     "frames_per_chunk": rows[0]["frames"],
                                     "fit_s_mean": round(float(np.mean(
                                         [d["fit_s"] for d in rows])), 3)}),
                decode_cost=mf.FrozenMap({"cpu": cost}))
            mf.put_representation(vdir / mf.MANIFEST_FILE, rep)
            summary["representations"].setdefault(name, []).append(
                {"video": v.id, "kbps": round(rep.measured_kbps, 2),
                 "psnr_db": round(float(np.mean([c.psnr_db for c in chunks])), 3),
                 "ssim": round(float(np.mean([c.ssim for c in chunks])), 4),
                 "decode_s_per_chunk": cost.s_per_chunk_mean})
    return summary


def _gen_identity() -> tuple[str, str]:
    return _GEN.model_hash, _GEN.kind
