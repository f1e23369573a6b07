"""Inversion: fit a chunk's low-rank prompts to its source frames (``codec.encode``).

1. Starting point: the local model's encoder predicts each keyframe's context (amortised
   inversion); its truncated SVD gives ``U, V`` with ``U @ V / sqrt(r)`` equal to the best
   rank-r approximation, signs aligned keyframe to keyframe so that interpolating U and V
   separately is meaningful. A generator without an encoder (sd-turbo) starts from small
   seeded random factors.
2. Refinement: Adam on U and V, fake-quantised to 8 bits with a straight-through
   estimator; the loss covers the keyframes *and* in-between frames (interpolation-aware):
   ``mse_weight * MSE + ssim_weight * (1 - SSIM) + context_l1_weight * mean|c|``, defaults
   1 / 0.005 / 0 (SSIM over 7x7 windows, computed here, no download; it stands in for the
   VGG perceptual term, whose weights cannot be had here); the learning rate (default 0.02)
   halves after 3 steps without improvement (floor ``lr_min``, default lr/100); stops at
   ``steps`` or once the fitted frames reach ``target_psnr_db``. The best step is kept.
3. Output: the wire format (``codec.wire``), 8-bit U/V per keyframe with scale and zero
   point, and for a video's first chunk the 8-bit initial latent.
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from codec import render, wire


@dataclass(frozen=True)
class EncodeInfo:
    """psnr_start_db / psnr_db: PSNR of all frames of the chunk (decoded exactly as a
    receiver would) before and after refinement. steps: Adam steps run. seconds: wall time.
    bytes: chunk size; init_bytes: bytes of the initial latent inside it (0 if none)."""

    psnr_start_db: float
    psnr_db: float
    ssim: float
    steps: int
    seconds: float
    bytes: int
    init_bytes: int


def fake_quant(x: torch.Tensor) -> torch.Tensor:
    """8-bit asymmetric per-tensor quantise-dequantise with a straight-through gradient;
    the same arithmetic as ``wire.quantise``."""
    with torch.no_grad():
        lo = torch.clamp(x.min(), max=0.0)
        hi = torch.clamp(x.max(), min=0.0)
        scale = torch.where(hi > lo, (hi - lo) / 255.0, torch.ones_like(hi))
        zero = torch.clamp(torch.round(-lo / scale), 0, 255)
        q = torch.clamp(torch.round(x / scale + zero), 0, 255)
        deq = (q - zero) * scale
    return x + (deq - x).detach()


def _ssim(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    k = 7
    mu_a, mu_b = F.avg_pool2d(a, k, 1), F.avg_pool2d(b, k, 1)
    saa = F.avg_pool2d(a * a, k, 1) - mu_a ** 2
    sbb = F.avg_pool2d(b * b, k, 1) - mu_b ** 2
    sab = F.avg_pool2d(a * b, k, 1) - mu_a * mu_b
    m = (((2 * mu_a * mu_b + c1) * (2 * sab + c2))
         / ((mu_a ** 2 + mu_b ** 2 + c1) * (saa + sbb + c2)))
    return m.mean()


def _start_factors(gen, target: torch.Tensor, positions, rank: int, seed: int):
    ctx = gen.initial_context(target[list(positions)]) if hasattr(gen, "initial_context") else None
    k = len(positions)
    if ctx is None:
        g = torch.Generator().manual_seed(seed)
        L = gen.tokens(target.shape[2], target.shape[3])
        u = 0.1 * torch.randn(1, L, rank, generator=g).repeat(k, 1, 1)
        v = 0.1 * torch.randn(1, rank, gen.token_dim, generator=g).repeat(k, 1, 1)
        return u, v
    uu, s, vh = torch.linalg.svd(ctx.float(), full_matrices=False)
    root = torch.sqrt(s[:, :rank]) * rank ** 0.25
    u = uu[:, :, :rank] * root[:, None, :]
    v = vh[:, :rank, :] * root[:, :, None]
    for j in range(1, k):  # SVD signs are arbitrary: align each component with the last key
        flip = torch.sign((v[j] * v[j - 1]).sum(-1))
        flip[flip == 0] = 1
        u[j] = u[j] * flip[None, :]
        v[j] = v[j] * flip[:, None]
    return u, v


def fit_frame_ids(positions, n_frames: int) -> list[int]:
    """Frames in the loss: the keyframes and the midpoint of each keyframe gap."""
    ids = set(positions)
    for a, b in itertools.pairwise(positions):
        if b - a > 1:
            ids.add((a + b) // 2)
    return sorted(ids)


def _psnr(x: torch.Tensor, y: torch.Tensor) -> float:
    mse = float(((x.clamp(0, 1) - y) ** 2).mean())
    return 100.0 if mse <= 1e-10 else 10 * math.log10(1 / mse)


def encode_chunk(gen, frames: np.ndarray, rank: int, key_interval: int = 10, steps: int = 0,
                 lr: float = 0.02, seed: int = 0, with_init: bool = False,
                 target_psnr_db: float | None = None, ssim_weight: float = 0.005,
                 mse_weight: float = 1.0, context_l1_weight: float = 0.0,
                 lr_min: float | None = None, measure: bool = True) -> tuple[bytes, EncodeInfo]:
    """Fit one chunk.

    gen: a generator (``codec.generators``). frames: (F,H,W,3) uint8 source frames.
    rank: r. key_interval: frames between keyframes. steps: refinement steps (0 = the
    amortised start only). lr: Adam learning rate, halved after 3 steps without improvement
    down to ``lr_min`` (default lr / 100). seed: the chunk's noise seed.
    with_init: carry the initial latent (a video's first chunk). target_psnr_db: stop early
    once the fitted frames reach it. Loss: ``mse_weight * MSE + ssim_weight * (1 - SSIM) +
    context_l1_weight * mean|c|`` with ``c = U @ V / sqrt(r)`` of the keyframes (Promptus'
    recipe is 0.8 / 0.2 / 0.1 with lr 0.1, floor 0.001; docs/codec.md says why the defaults
    differ). measure: decode the whole chunk to report quality.
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[3] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames: expected (F,H,W,3) uint8, got {frames.shape} {frames.dtype}")
    if not 1 <= rank <= 255:
        raise ValueError(f"rank: expected 1..255, got {rank}")
    for name, val in (("mse_weight", mse_weight), ("ssim_weight", ssim_weight),
                      ("context_l1_weight", context_l1_weight)):
        if not (math.isfinite(val) and val >= 0):
            raise ValueError(f"{name}: expected a finite number >= 0, got {val}")
    if not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr: expected a finite number > 0, got {lr}")
    lr_min = lr / 100 if lr_min is None else lr_min
    if not (math.isfinite(lr_min) and 0 < lr_min <= lr):
        raise ValueError(f"lr_min: expected a number in (0, lr = {lr}], got {lr_min}")
    t0 = time.perf_counter()
    n, h, w, _ = frames.shape
    dev = next(iter(gen.parameters())).device
    dtype = torch.float32
    target = torch.from_numpy(frames).to(dev).permute(0, 3, 1, 2).to(dtype) / 255.0
    positions = wire.keyframe_positions(n, key_interval)
    lat_shape = gen.latent_shape(h, w)
    noise = render.chunk_noise(seed, n, lat_shape, dev, dtype)
    with torch.no_grad():
        u0, v0 = _start_factors(gen, target, positions, rank, seed)
    init_q = None
    init_quant = (0.0, 0.0)
    init_lat = None
    if with_init:
        with torch.no_grad():
            ctx0 = render.interpolated_context(u0[:1], v0[:1], [0], [0])
            lat0 = gen.generate(ctx0, render.NOISE_WEIGHT * noise[:1])[0]
        init_q, s, z = wire.quantise(lat0.float().cpu().numpy())
        init_quant = (s, z)
        init_lat = torch.from_numpy(
            (init_q.astype(np.float32) - np.float32(z)) * np.float32(s)).to(dev, dtype)
    fit_ids = fit_frame_ids(positions, n)
    fit_target = target[fit_ids]

    def quantised(u, v):
        return (torch.stack([fake_quant(u[j]) for j in range(len(positions))]),
                torch.stack([fake_quant(v[j]) for j in range(len(positions))]))

    def objective(uq, vq):
        """(loss, mse) of the fitted frames for quantised factors."""
        out, _ = render.render(gen, uq, vq, positions, fit_ids, noise, init_lat)
        mse = ((out - fit_target) ** 2).mean()
        loss = mse_weight * mse
        if ssim_weight:
            loss = loss + ssim_weight * (1 - _ssim(out, fit_target))
        if context_l1_weight:
            loss = loss + context_l1_weight * (uq @ vq).abs().mean() / math.sqrt(rank)
        return loss, mse

    u = u0.clone().requires_grad_(True)
    v = v0.clone().requires_grad_(True)
    best = (u0.clone(), v0.clone())
    steps_run = 0
    if steps > 0:
        opt = torch.optim.Adam([u, v], lr=lr)
        best_loss = math.inf
        stale = 0
        for step in range(steps):
            loss, mse = objective(*quantised(u, v))
            lv = float(loss.detach())
            if lv < best_loss - 1e-7:
                best_loss, stale = lv, 0
                best = (u.detach().clone(), v.detach().clone())
            else:
                stale += 1
                if stale >= 3:
                    for gr in opt.param_groups:
                        gr["lr"] = max(lr_min, gr["lr"] / 2)
                    stale = 0
            if (target_psnr_db is not None
                    and 10 * math.log10(1 / max(float(mse), 1e-10)) >= target_psnr_db):
                break
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            steps_run = step + 1
        # the last update is evaluated too
        with torch.no_grad():
            lv = float(objective(*quantised(u, v))[0])
            if lv < best_loss:
                best = (u.detach().clone(), v.detach().clone())
    ub, vb = best
    quant = np.zeros((len(positions), 4), np.float32)
    u_q = np.zeros((len(positions), ub.shape[1], rank), np.uint8)
    v_q = np.zeros((len(positions), rank, vb.shape[2]), np.uint8)
    for j in range(len(positions)):
        u_q[j], quant[j, 0], quant[j, 1] = wire.quantise(ub[j].float().cpu().numpy())
        v_q[j], quant[j, 2], quant[j, 3] = wire.quantise(vb[j].float().cpu().numpy())
    chunk = wire.PromptChunk(
        kind=gen.kind, model_hash=bytes.fromhex(gen.model_hash)[:16], width=w, height=h,
        n_frames=n, rank=rank, positions=positions, latent_shape=tuple(lat_shape), seed=seed,
        u_q=u_q, v_q=v_q, quant=quant, init_q=init_q, init_quant=init_quant)
    data = wire.pack(chunk)
    init_bytes = 0
    if init_q is not None:
        init_bytes = len(data) - len(wire.pack(wire.PromptChunk(**{
            **chunk.__dict__, "init_q": None, "init_quant": (0.0, 0.0)})))
    psnr_start = psnr_end = ssim_end = float("nan")
    if measure:
        from codec.quality import psnr_db, ssim

        out_end = decode_prompt_chunk(gen, wire.unpack(data))
        psnr_end = psnr_db(frames, out_end)
        ssim_end = ssim(frames, out_end)
        if steps_run:
            start_chunk = wire.PromptChunk(**{**chunk.__dict__, **_quantised_fields(u0, v0, rank)})
            psnr_start = psnr_db(frames, decode_prompt_chunk(gen, start_chunk))
        else:
            psnr_start = psnr_end
    return data, EncodeInfo(psnr_start, psnr_end, ssim_end, steps_run,
                            time.perf_counter() - t0, len(data), init_bytes)


def _quantised_fields(u, v, rank) -> dict:
    k = u.shape[0]
    quant = np.zeros((k, 4), np.float32)
    u_q = np.zeros((k, u.shape[1], rank), np.uint8)
    v_q = np.zeros((k, rank, v.shape[2]), np.uint8)
    for j in range(k):
        u_q[j], quant[j, 0], quant[j, 1] = wire.quantise(u[j].float().cpu().numpy())
        v_q[j], quant[j, 2], quant[j, 3] = wire.quantise(v[j].float().cpu().numpy())
    return {"u_q": u_q, "v_q": v_q, "quant": quant}


def decode_prompt_chunk(gen, chunk: wire.PromptChunk, batch: int = 16) -> np.ndarray:
    """Frames (F,H,W,3) uint8 of a parsed chunk (no model-hash check; see ``codec.decode``)."""
    dev = next(iter(gen.parameters())).device
    dtype = next(iter(gen.parameters())).dtype
    with torch.inference_mode():
        u = torch.from_numpy(chunk.u()).to(dev, dtype)
        v = torch.from_numpy(chunk.v()).to(dev, dtype)
        noise = render.chunk_noise(chunk.seed, chunk.n_frames, chunk.latent_shape, dev, dtype)
        init = chunk.init_latent()
        init_t = torch.from_numpy(init).to(dev, dtype) if init is not None else None
        out, _ = render.render(gen, u, v, chunk.positions, list(range(chunk.n_frames)), noise,
                               init_t, decode_batch=batch)
        out = (out.float().clamp(0, 1) * 255 + 0.5).to(torch.uint8)
        return out.permute(0, 2, 3, 1).cpu().numpy()
