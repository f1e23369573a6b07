"""Prompt -> frames for one chunk, shared by the encoder's fitting loop and the decoder.

Per frame f of a chunk with keyframes at ``positions``:
- context: U and V of the two surrounding keyframes interpolated linearly and *separately*,
  ``c_f = U_f @ V_f / sqrt(r)`` (Promptus' temporal smoothing);
- starting latent: ``0.05 * prev + 0.95 * noise_f`` with ``noise_f`` from the chunk's seed.
  ``prev`` is the latent of the previous keyframe for a keyframe (the chunk's initial latent,
  or zeros, for the first one) and the latent of the segment's opening keyframe for the
  frames in between. Promptus chains every frame to the one before; chaining through
  keyframes keeps the same conditioning but lets the in-between frames of a chunk run as
  one batch (a 30-frame chunk = K sequential keyframe steps + one batched step).
"""

from __future__ import annotations

import math

import numpy as np
import torch

PREV_WEIGHT = 0.05
NOISE_WEIGHT = 0.95


def chunk_noise(seed: int, n_frames: int, latent_shape, device="cpu", dtype=torch.float32):
    """The shared noise of a chunk: (n_frames, C, h, w), a pure function of the seed."""
    g = torch.Generator(device="cpu").manual_seed(int(seed))
    n = torch.randn((n_frames, *latent_shape), generator=g, dtype=torch.float32)
    return n.to(device=device, dtype=dtype)


def segment_of(positions, f: int) -> tuple[int, float]:
    """(index a of the keyframe at or before frame f, weight of keyframe a+1)."""
    a = int(np.searchsorted(positions, f, side="right")) - 1
    if a >= len(positions) - 1:
        return len(positions) - 1, 0.0
    pa, pb = positions[a], positions[a + 1]
    return a, (f - pa) / (pb - pa)


def interpolated_context(u: torch.Tensor, v: torch.Tensor, positions, frame_ids) -> torch.Tensor:
    """u (K,L,r), v (K,r,D) -> contexts (n,L,D) of ``frame_ids``."""
    rank = u.shape[-1]
    idx_a, idx_b, wts = [], [], []
    for f in frame_ids:
        a, w = segment_of(positions, f)
        idx_a.append(a)
        idx_b.append(min(a + 1, len(positions) - 1))
        wts.append(w)
    w = torch.tensor(wts, dtype=u.dtype, device=u.device)[:, None, None]
    ua, ub = u[idx_a], u[idx_b]
    va, vb = v[idx_a], v[idx_b]
    uf = ua + (ub - ua) * w
    vf = va + (vb - va) * w
    return uf @ vf / math.sqrt(rank)


def render(gen, u: torch.Tensor, v: torch.Tensor, positions, frame_ids, noise: torch.Tensor,
           init_latent: torch.Tensor | None, detach_chain: bool = True,
           decode_batch: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """Frames (n,3,H,W) for ``frame_ids`` (any order) and the keyframe latents (K,C,h,w)."""
    positions = list(positions)
    key_ctx = interpolated_context(u, v, positions, positions)
    prev = init_latent[None] if init_latent is not None else torch.zeros_like(noise[:1])
    key_lat = []
    for j, p in enumerate(positions):
        z = PREV_WEIGHT * (prev.detach() if detach_chain else prev) + NOISE_WEIGHT * noise[p:p + 1]
        lat = gen.generate(key_ctx[j:j + 1], z)
        key_lat.append(lat)
        prev = lat
    key_lat_t = torch.cat(key_lat)
    key_index = {p: j for j, p in enumerate(positions)}
    others = [f for f in frame_ids if f not in key_index]
    lat_of = {}
    if others:
        ctx = interpolated_context(u, v, positions, others)
        seg = [segment_of(positions, f)[0] for f in others]
        prev_o = key_lat_t[seg]
        if detach_chain:
            prev_o = prev_o.detach()
        z = PREV_WEIGHT * prev_o + NOISE_WEIGHT * noise[others]
        lat_o = gen.generate(ctx, z)
        lat_of = {f: lat_o[i] for i, f in enumerate(others)}
    lats = torch.stack([key_lat_t[key_index[f]] if f in key_index else lat_of[f]
                        for f in frame_ids])
    frames = torch.cat([gen.decode(lats[i:i + decode_batch])
                        for i in range(0, lats.shape[0], decode_batch)])
    return frames, key_lat_t
