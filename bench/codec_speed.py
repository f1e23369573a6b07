"""Prompt codec speed on this machine: inversion seconds and decode frames per second.

Content: chunks of the default catalog's first video (generated, 256x256, 30 fps, 1-s
chunks; no catalog directory needed). Prints:
- inversion: seconds per 30-frame chunk, per frame and per keyframe, amortised only and
  with refinement steps, with PSNR before/after;
- decode: fps for batch 1 (a one-frame chunk) and for a whole 30-frame chunk, CPU
  threads as given (and CUDA fp16 when available).
Last line: ``decode_fps <x>`` (whole 30-frame chunks, CPU).

    .venv/bin/python bench/codec_speed.py [--quick] [--threads 2] [--rank 8] [--steps 10]
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def source_chunks(n: int, width: int = 256, height: int = 256, fps: float = 30.0):
    from origin.prepare import PrepareConfig, plan_videos
    from origin.source import iter_source_chunks

    plan = plan_videos(PrepareConfig(out="unused"))[0]
    it = iter_source_chunks(plan.source, width, height, fps, plan.n_frames, int(fps))
    return [next(it) for _ in range(n)]


def timed(fn, reps: int) -> list[float]:
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer chunks and repetitions")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--steps", type=int, default=10, help="refinement steps to time")
    ap.add_argument("--model", default="local")
    args = ap.parse_args()

    import torch

    from codec.decode import PromptDecoder, load_decoder
    from codec.encode import encode_chunk
    from codec.model import n_params

    torch.set_num_threads(args.threads)
    n_chunks = 2 if args.quick else 4
    reps = 3 if args.quick else 8
    chunks = source_chunks(n_chunks)
    dec = load_decoder(args.model, device="cpu", threads=args.threads)
    gen = dec.gen
    if hasattr(gen, "model"):
        m = gen.model
        print(f"model local: params encoder {n_params(m.encoder)}, generator "
              f"{n_params(m.unet) + n_params(m.ctx_proj)}, decoder {n_params(m.decoder)}; "
              f"torch {torch.__version__}, {args.threads} threads")
    n_keys = 4
    print(f"inversion (rank {args.rank}, keyframe interval 10 -> {n_keys} keyframes per "
          f"30-frame chunk):")
    datas = []
    for steps in (0, args.steps):
        secs, p0, p1 = [], [], []
        for i, fr in enumerate(chunks):
            data, info = encode_chunk(gen, fr, args.rank, steps=steps, seed=i, measure=True)
            secs.append(info.seconds)
            p0.append(info.psnr_start_db)
            p1.append(info.psnr_db)
            if steps == 0:
                datas.append(data)
        s = float(np.mean(secs))
        print(f"  steps {steps:3d}: {s:6.2f} s/chunk  {s / 30 * 1000:7.1f} ms/frame  "
              f"{s / n_keys:6.2f} s/keyframe  PSNR {np.mean(p0):.2f} -> {np.mean(p1):.2f} dB "
              f"(incl. quality measurement)")

    # decode: batch 1 = a one-frame chunk; whole chunk = 30 frames in one call
    one, _ = encode_chunk(gen, chunks[0][:1], args.rank, steps=0, measure=False)
    dec.decode_chunk(one)
    dec.decode_chunk(datas[0])
    t1 = timed(lambda: dec.decode_chunk(one), reps * 3)
    fps1 = 1 / float(np.median(t1))
    tch = []
    for d in datas:
        tch += timed(lambda d=d: dec.decode_chunk(d), max(1, reps // 2))
    s_chunk = float(np.median(tch))
    print(f"decode cpu ({args.threads} threads), 256x256: batch 1 {fps1:6.1f} fps "
          f"({1000 / fps1:.1f} ms/frame); 30-frame chunk {s_chunk * 1000:.0f} ms "
          f"(p95 {np.percentile(tch, 95) * 1000:.0f} ms) = {30 / s_chunk:.1f} fps")
    if torch.cuda.is_available():
        gdec = PromptDecoder(load_decoder(args.model, device="cuda").gen)
        gdec.decode_chunk(datas[0])
        torch.cuda.synchronize()
        tg = timed(lambda: (gdec.decode_chunk(datas[0]), torch.cuda.synchronize()), reps)
        print(f"decode cuda fp16: 30-frame chunk {np.median(tg) * 1000:.1f} ms = "
              f"{30 / np.median(tg):.1f} fps")
    else:
        print("decode cuda: not available on this machine")
    print(f"decode_fps {30 / s_chunk:.1f}")


if __name__ == "__main__":
    main()
