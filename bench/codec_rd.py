"""Rate-distortion of the prompt codec against H.264/H.265 and image baselines.

Content: chunks of the default catalog's generated videos (``testbed prepare`` defaults:
8 videos over the photographs bundled with scikit-image/scikit-learn, 256x256, 30 fps,
1-s chunks). None of those photographs is in the local model's training set
(``codec.train.TRAIN_IMAGES``), so this is held-out content.

Per chunk and method: bytes (kbps of 1-s chunks), PSNR (dB, RGB) and SSIM against the
source frames (``codec.quality``):
- prompt r in {2,4,8,16}: amortised start only (the catalog default), and at the default
  rank with ``--refine`` Adam steps; the first chunk's initial latent is reported apart;
- H.264 / H.265 (x264/x265 medium via PyAV, the catalog's settings) at the prompt rates
  and at 100/250 kbps;
- bicubic thumbnail and JPEG with the prompt's byte budget per keyframe, keyframes only,
  in-between frames blended linearly (the prompt's own keyframe structure).
Writes a table, a CSV and a PNG plot (default results/codec_rd.*). Last line:
``prompt_psnr_db_r8 <x>`` (the default rank, catalog settings).

    .venv/bin/python bench/codec_rd.py [--quick] [--refine 10] [--out results/codec_rd]
"""

from __future__ import annotations

import argparse
import csv
import io
import time
from pathlib import Path

import numpy as np

RANKS = (2, 4, 8, 16)
DEFAULT_RANK = 8


def catalog_chunks(n_videos: int, per_video: int):
    from origin.prepare import PrepareConfig, plan_videos
    from origin.source import iter_source_chunks

    out = []
    for plan in plan_videos(PrepareConfig(out="unused"))[:n_videos]:
        n_chunks = -(-plan.n_frames // 30)
        want = sorted({round(i * (n_chunks - 2) / max(1, per_video - 1))
                       for i in range(per_video)})
        for i in want:
            fr = next(iter_source_chunks(plan.source, 256, 256, 30.0, plan.n_frames, 30,
                                         start_chunk=i))
            if fr.shape[0] == 30:
                out.append((plan.video_id, i, fr))
    return out


def blend_keyframes(keys: list[np.ndarray], positions, n: int) -> np.ndarray:
    from codec.render import segment_of

    keys = [k.astype(np.float32) for k in keys]
    out = []
    for f in range(n):
        a, w = segment_of(positions, f)
        b = min(a + 1, len(keys) - 1)
        out.append(keys[a] * (1 - w) + keys[b] * w)
    return np.clip(np.stack(out) + 0.5, 0, 255).astype(np.uint8)


def thumbnail_codec(frames, positions, budget_bytes: int):
    from PIL import Image

    side = max(2, int((budget_bytes / 3) ** 0.5))
    keys = []
    for p in positions:
        im = Image.fromarray(frames[p]).resize((side, side), Image.Resampling.BOX)
        keys.append(np.asarray(im.resize(frames.shape[2:0:-1], Image.Resampling.BICUBIC)))
    return blend_keyframes(keys, positions, len(frames)), side * side * 3 * len(positions)


def jpeg_codec(frames, positions, budget_bytes: int):
    from PIL import Image

    keys, total = [], 0
    for p in positions:
        best = None
        for q in range(95, 0, -3):
            buf = io.BytesIO()
            Image.fromarray(frames[p]).save(buf, "JPEG", quality=q, optimize=True)
            if buf.tell() <= budget_bytes or q <= 2:
                best = buf.getvalue()
                break
        total += len(best)
        keys.append(np.asarray(Image.open(io.BytesIO(best)).convert("RGB")))
    return blend_keyframes(keys, positions, len(frames)), total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help="2 videos x 2 chunks (default: all 8 videos x 2 chunks)")
    ap.add_argument("--refine", type=int, default=10,
                    help="refinement steps for the default rank's second curve (0: skip)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--model", default="local")
    ap.add_argument("--out", type=Path, default=Path("results/codec_rd"),
                    help="output prefix for .csv and .png")
    args = ap.parse_args()

    import torch

    from codec import pixel, quality, wire
    from codec.encode import encode_chunk
    from codec.generators import load_generator

    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    chunks = catalog_chunks(2, 2) if args.quick else catalog_chunks(8, 2)
    gen = load_generator(args.model)
    positions = wire.keyframe_positions(30, 10)
    rows = []  # (method, setting, video, chunk, bytes, psnr, ssim, seconds)
    init_bytes = []

    def add(method, setting, vid, idx, nbytes, ref, out, secs=0.0):
        rows.append((method, setting, vid, idx, nbytes, quality.psnr_db(ref, out),
                     quality.ssim(ref, out), secs))

    prompt_bytes = {r: [] for r in RANKS}
    for vid, idx, fr in chunks:
        for r in RANKS:
            data, info = encode_chunk(gen, fr, r, steps=0, seed=idx)
            rows.append(("prompt", f"r{r}", vid, idx, len(data), info.psnr_db, info.ssim,
                         info.seconds))
            prompt_bytes[r].append(len(data))
            if r == DEFAULT_RANK and args.refine:
                data2, info2 = encode_chunk(gen, fr, r, steps=args.refine, seed=idx)
                rows.append(("prompt+refine", f"r{r} {args.refine} steps", vid, idx,
                             len(data2), info2.psnr_db, info2.ssim, info2.seconds))
        if idx == chunks[0][1] and vid == chunks[0][0]:
            _d, i0 = encode_chunk(gen, fr, DEFAULT_RANK, steps=0, seed=idx, with_init=True,
                                  measure=False)
            init_bytes.append(i0.init_bytes)
    rate_kbps = {r: float(np.mean(prompt_bytes[r])) * 8 / 1000 for r in RANKS}
    pixel_targets = sorted({round(k) for k in rate_kbps.values()} | {100, 250})
    for vid, idx, fr in chunks:
        for codec in pixel.available_codecs():
            for kbps in pixel_targets:
                data = pixel.encode_chunks(fr, codec, kbps, 30.0, 30)[0]
                out = pixel.decode_pixel_chunk(data, codec)
                add(codec, f"{kbps} kbps target", vid, idx, len(data), fr, out)
        for r in RANKS:
            budget = int(np.mean(prompt_bytes[r]) / len(positions))
            out, nb = thumbnail_codec(fr, positions, budget)
            add("thumbnail", f"r{r} budget", vid, idx, nb, fr, out)
            out, nb = jpeg_codec(fr, positions, budget)
            add("jpeg-keyframes", f"r{r} budget", vid, idx, nb, fr, out)

    # aggregate per (method, setting)
    agg = {}
    for m, s, _v, _i, nb, p, q, secs in rows:
        agg.setdefault((m, s), []).append((nb, p, q, secs))
    table = []
    for (m, s), vals in agg.items():
        a = np.array(vals, dtype=np.float64)
        table.append((m, s, a[:, 0].mean() * 8 / 1000, a[:, 1].mean(), a[:, 2].mean(),
                      a[:, 3].mean(), len(vals)))
    table.sort(key=lambda t: (t[0], t[2]))
    print(f"{len(chunks)} held-out chunks (30 frames, 256x256) from "
          f"{len({c[0] for c in chunks})} default-catalog videos; model {gen.model_hash[:12]}")
    print(f"{'method':<16} {'setting':<20} {'kbps':>8} {'PSNR dB':>8} {'SSIM':>7} {'fit s':>6}")
    for m, s, kbps, p, q, secs, _n in table:
        print(f"{m:<16} {s:<20} {kbps:8.1f} {p:8.2f} {q:7.4f} {secs:6.2f}")
    if init_bytes:
        print(f"initial latent (video's first chunk only): {init_bytes[0]} bytes extra")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out.with_suffix(".csv"), "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["method", "setting", "video", "chunk", "bytes", "psnr_db", "ssim", "fit_s"])
        w.writerows(rows)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    by_method = {}
    for m, _setting, kbps, p, q, _secs, _n in table:
        by_method.setdefault(m, []).append((kbps, p, q))
    for m, pts in by_method.items():
        pts.sort()
        k = [x[0] for x in pts]
        axes[0].plot(k, [x[1] for x in pts], "o-", label=m)
        axes[1].plot(k, [x[2] for x in pts], "o-", label=m)
    for ax, lab in zip(axes, ("PSNR (dB)", "SSIM")):
        ax.set_xscale("log")
        ax.set_xlabel("kbps (1-s chunks)")
        ax.set_ylabel(lab)
        ax.grid(True, alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("prompt codec vs H.264/H.265 and keyframe image baselines (held-out content)")
    fig.tight_layout()
    fig.savefig(args.out.with_suffix(".png"), dpi=100)
    print(f"wrote {args.out.with_suffix('.csv')} and {args.out.with_suffix('.png')} "
          f"({time.perf_counter() - t_start:.0f} s)")
    default = agg[("prompt", f"r{DEFAULT_RANK}")]
    print(f"prompt_psnr_db_r{DEFAULT_RANK} {np.mean([v[1] for v in default]):.2f}")


if __name__ == "__main__":
    main()
