"""Training of the ``local`` model (``testbed codec train``): deterministic from a seed.

Data: images that ship inside scikit-image which the catalog generator does *not* use
(``origin.source.PHOTOS`` are held out, so the rate-distortion benchmark on the default
catalog measures unseen photographs), grey ones colourised at random, plus procedural
texture (smooth colour fields, gratings, discs and boxes with hard edges), in random
square crops (``size``: 128x128 for the committed checkpoint, the default) with random
scale and flips. The model works on any multiple of 16 pixels (one token per 16x16
patch), so it decodes 256x256 frames; the held-out evaluation uses 256x256 crops.

Objective: frame -> encoder -> context projected to a random rank r in {1,2,4,8,16,full}
-> one UNet step from ``0.95 * noise`` -> decoder; mean squared error against the frame.
So the encoder learns the amortised starting point and the generator/decoder learn to work
from rank-r prompts. Adam, cosine learning rate, a fixed number of steps (not a time
budget, so the result depends only on the seed and the torch build).
"""

from __future__ import annotations

import math
import time

import numpy as np

# skimage.data images outside origin.source.PHOTOS (checked by a test).
TRAIN_IMAGES = ("cell", "clock", "coins", "colorwheel", "logo", "moon", "page",
                "stereo_motorcycle", "text", "checkerboard", "horse", "binary_blobs",
                "shepp_logan_phantom", "microaneurysms")
EVAL_PHOTOS = (("skimage", "chelsea"), ("skimage", "coffee"), ("sklearn", "china"),
               ("skimage", "astronaut"))
RANKS = (1, 2, 4, 8, 16, 0)  # 0 = full rank


def _to_float_rgb(img) -> list[np.ndarray]:
    arr = np.asarray(img)
    if arr.dtype == bool:
        arr = arr.astype(np.float32)
    elif arr.dtype == np.uint8:
        arr = arr.astype(np.float32) / 255.0
    else:
        arr = arr.astype(np.float32)
        arr = (arr - arr.min()) / max(1e-6, float(arr.max() - arr.min()))
    if arr.ndim == 3 and arr.shape[2] == 4:  # RGBA logo on white
        a = arr[:, :, 3:4]
        arr = arr[:, :, :3] * a + (1 - a)
    return [arr]


def training_images() -> list[np.ndarray]:
    """The held-out-safe image pool as float32 arrays (H,W,3) or (H,W) in [0,1]."""
    import skimage.data

    out = []
    for name in TRAIN_IMAGES:
        img = getattr(skimage.data, name)()
        if isinstance(img, tuple):
            for part in img[:2]:
                out += _to_float_rgb(part)
        else:
            out += _to_float_rgb(img)
    return out


def _resize(img: np.ndarray, h: int, w: int) -> np.ndarray:
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(np.ascontiguousarray(img))
    t = t[None, None] if t.ndim == 2 else t.permute(2, 0, 1)[None]
    r = F.interpolate(t, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
    r = r[0, 0] if img.ndim == 2 else r[0].permute(1, 2, 0)
    return r.numpy()


def _colourise(g: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    c0, c1, c2 = rng.random((3, 3)).astype(np.float32)
    g = g[..., None]
    return np.clip(c0 * (1 - g) ** 2 + 2 * c1 * g * (1 - g) + c2 * g ** 2, 0, 1)


def _procedural(size: int, rng: np.random.Generator) -> np.ndarray:
    kind = rng.integers(3)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    if kind == 0:  # smooth colour field, several octaves
        img = np.zeros((size, size, 3), np.float32)
        for octave in (4, 8, 16, 32):
            noise = rng.standard_normal((octave, octave, 3)).astype(np.float32)
            img += _resize(noise, size, size) * (4 / octave) ** 0.7
        img = 0.5 + 0.18 * img
    elif kind == 1:  # gratings
        img = np.zeros((size, size, 3), np.float32) + rng.random(3).astype(np.float32) * 0.5
        for _ in range(3):
            f = rng.uniform(2, 40)
            th = rng.uniform(0, math.pi)
            wave = np.sin(2 * math.pi * f * (xx * math.cos(th) + yy * math.sin(th)))
            img += 0.25 * wave[..., None] * rng.uniform(-1, 1, 3).astype(np.float32)
    else:  # discs and boxes with hard edges over a gradient
        a, b = rng.random(3), rng.random(3)
        img = (a * (1 - xx[..., None]) + b * xx[..., None]).astype(np.float32)
        for _ in range(rng.integers(3, 12)):
            cy, cx, r = rng.random(), rng.random(), rng.uniform(0.03, 0.3)
            col = rng.random(3).astype(np.float32)
            if rng.random() < 0.5:
                m = (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
            else:
                m = (np.abs(yy - cy) < r) & (np.abs(xx - cx) < r * rng.uniform(0.3, 1.5))
            stripes = 0.15 * np.sin(2 * math.pi * rng.uniform(5, 30) * (xx + yy))[..., None]
            img[m] = (col + stripes)[m] if rng.random() < 0.5 else col
    return np.clip(img, 0, 1)


def sample_batch(pool: list[np.ndarray], batch: int, size: int,
                 rng: np.random.Generator) -> np.ndarray:
    """(batch, 3, size, size) float32 in [0,1]."""
    out = np.empty((batch, 3, size, size), np.float32)
    for i in range(batch):
        if rng.random() < 0.3:
            img = _procedural(size, rng)
        else:
            src = pool[rng.integers(len(pool))]
            h, w = src.shape[:2]
            scale = rng.uniform(0.5, 1.5) * size / min(h, w) * rng.uniform(1.0, 2.0)
            span = min(h, w, max(8, round(size / scale)))  # source pixels per crop side
            y0, x0 = rng.integers(h - span + 1), rng.integers(w - span + 1)
            img = _resize(src[y0:y0 + span, x0:x0 + span], size, size)
            img = _colourise(img, rng) if img.ndim == 2 else img
            if rng.random() < 0.5:
                img = img[:, ::-1]
            if rng.random() < 0.3:
                img = img[..., rng.permutation(3)]
        out[i] = np.transpose(img, (2, 0, 1))
    return out


def eval_frames(size: int = 256) -> np.ndarray:
    """Held-out photographs (catalog photos), centre crops (N,3,size,size) in [0,1]."""
    from origin.source import load_photo

    out = []
    for pkg, name in EVAL_PHOTOS:
        img = load_photo(pkg, name).astype(np.float32) / 255
        h, w = img.shape[:2]
        s = size / min(h, w)
        img = _resize(img, max(size, round(h * s)), max(size, round(w * s)))
        y0, x0 = (img.shape[0] - size) // 2, (img.shape[1] - size) // 2
        out.append(np.transpose(img[y0:y0 + size, x0:x0 + size], (2, 0, 1)))
    return np.stack(out)


def evaluate(model, frames: np.ndarray, ranks=(2, 4, 8, 16)) -> dict:
    """Mean PSNR (dB) of encoder-only prompts (no refinement, no quantisation) per rank."""
    import torch

    from codec.model import low_rank_project

    x = torch.from_numpy(frames)
    out = {}
    with torch.inference_mode():
        ctx = model.encode_context(x)
        g = torch.Generator().manual_seed(0)
        z = 0.95 * torch.randn(x.shape[0], model.latent_channels, x.shape[2] // 16,
                               x.shape[3] // 16, generator=g)
        for r in ranks:
            y = model.decode_latent(model.generate(low_rank_project(ctx, r), z)).clamp(0, 1)
            mse = ((y - x) ** 2).mean(dim=(1, 2, 3))
            out[f"r{r}"] = float((10 * torch.log10(1 / mse)).mean())
    return out


def train(out_path, steps: int = 2500, seed: int = 0, batch: int = 8, size: int = 128,
          lr: float = 2e-3, threads: int = 2, log=print, command: str = "") -> dict:
    """Train from scratch and save ``out_path`` (.safetensors + .json); returns the metadata.

    The defaults are the ones that made the committed checkpoint (``testbed codec train``
    passes on only the flags given, so this signature is the one source of them).
    """
    import torch

    from codec import weights
    from codec.model import LocalModel, low_rank_project, n_params

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = LocalModel()
    model.train()
    pool = training_images()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    warm = 50
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * (0.03 + 0.97 * 0.5 * (1 + math.cos(
            math.pi * min(1.0, s / steps)))))
    held = eval_frames()
    t0 = time.perf_counter()
    ema = None
    for step in range(steps):
        x = torch.from_numpy(sample_batch(pool, batch, size, rng))
        ranks = [RANKS[i] for i in rng.integers(len(RANKS), size=batch)]
        ctx = model.encode_context(x)
        ctx = torch.stack([low_rank_project(ctx[i], r) if r else ctx[i]
                           for i, r in enumerate(ranks)])
        z = 0.95 * torch.randn(batch, model.latent_channels, size // 16, size // 16)
        y = model.decode_latent(model.generate(ctx, z))
        loss = ((y - x) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        lv = float(loss.detach())
        ema = lv if ema is None else 0.98 * ema + 0.02 * lv
        if step % 50 == 0 or step == steps - 1:
            log(f"step {step}/{steps} loss {ema:.5f} psnr~{10 * math.log10(1 / ema):.2f} dB "
                f"lr {sched.get_last_lr()[0]:.2e} {time.perf_counter() - t0:.0f} s")
        if step % 500 == 499:
            model.eval()
            log(f"held-out encoder-only PSNR at step {step + 1}: {evaluate(model, held)}")
            model.train()
    train_s = time.perf_counter() - t0
    model.eval()
    held_psnr = evaluate(model, held)
    log(f"held-out encoder-only PSNR: {held_psnr}")
    meta = {
        "model": "local",
        "seed": seed, "steps": steps, "batch": batch, "crop": size, "lr": lr,
        "threads": threads, "train_s": round(train_s, 1),
        "command": command or (f"testbed codec train --steps {steps} --seed {seed} "
                               f"--batch {batch} --crop {size}"),
        "train_images": list(TRAIN_IMAGES) + ["procedural"],
        "held_out_eval_psnr_db": held_psnr,
        "eval_photos": [f"{p}:{n}" for p, n in EVAL_PHOTOS],
        "params": {"encoder": n_params(model.encoder), "unet": n_params(model.unet),
                   "decoder": n_params(model.decoder)},
        "torch": torch.__version__,
    }
    digest = weights.save(model, out_path, meta)
    meta["sha256"] = digest
    return meta
