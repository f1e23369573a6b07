"""Frame quality against a reference: PSNR and SSIM on uint8 RGB arrays, numpy only.

Conventions (used for every ``psnr_db`` / ``ssim`` in the manifests):
- PSNR is over all RGB samples with peak 255; a chunk's PSNR is computed from the mean
  squared error of the whole chunk (not the mean of per-frame dB), capped at ``PSNR_CAP_DB``
  so identical frames give a finite number.
- SSIM is Wang et al.'s index with a 7x7 uniform window, K1 = 0.01, K2 = 0.03, sample
  covariance, computed per RGB channel and averaged, border of 3 pixels excluded: the same
  definition as scikit-image's ``structural_similarity(..., channel_axis=-1,
  data_range=255)`` with its defaults, which the tests check against. A chunk's SSIM is the
  mean over its frames.
"""

from __future__ import annotations

import numpy as np

PSNR_CAP_DB = 100.0
_WIN = 7
_K1, _K2 = 0.01, 0.03
_L = 255.0


def _as_frames(x: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype != np.uint8:
        raise TypeError(f"{name}: expected uint8 frames, got dtype {x.dtype}")
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"{name}: expected shape (frames, H, W, 3) or (H, W, 3), got {x.shape}")
    return x


def _check_pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = _as_frames(a, "reference")
    b = _as_frames(b, "distorted")
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch: reference {a.shape} vs distorted {b.shape}")
    return a, b


def mse_per_frame(ref: np.ndarray, dist: np.ndarray) -> np.ndarray:
    """Mean squared error of each frame over all RGB samples, shape (frames,)."""
    a, b = _check_pair(ref, dist)
    out = np.empty(a.shape[0], dtype=np.float64)
    for i in range(a.shape[0]):
        d = a[i].astype(np.int32) - b[i].astype(np.int32)
        out[i] = float(np.mean(d * d))
    return out


def _psnr_from_mse(mse: float) -> float:
    if mse <= 0:
        return PSNR_CAP_DB
    return float(min(PSNR_CAP_DB, 10.0 * np.log10(_L * _L / mse)))


def psnr_db(ref: np.ndarray, dist: np.ndarray) -> float:
    """PSNR (dB) of a whole clip or frame from its mean squared error."""
    return _psnr_from_mse(float(np.mean(mse_per_frame(ref, dist))))


def psnr_db_per_frame(ref: np.ndarray, dist: np.ndarray) -> np.ndarray:
    """PSNR (dB) of each frame, shape (frames,)."""
    return np.array([_psnr_from_mse(m) for m in mse_per_frame(ref, dist)])


def _box_sum(m: np.ndarray) -> np.ndarray:
    """Sum over every full 7x7 window of axes -3 and -2 (the 'valid' region).

    Built from shifted pair and quad sums (7 = 4 + 2 + 1): numpy's cumsum along a
    non-last axis is several times slower. Integer input stays exact: uint8 products summed
    over 49 samples fit easily in int32.
    """
    assert _WIN == 7
    h = m.shape[-3]
    s2 = m[..., :-1, :, :] + m[..., 1:, :, :]
    s4 = s2[..., :-2, :, :] + s2[..., 2:, :, :]
    r = s4[..., :h - 6, :, :] + s2[..., 4:h - 2, :, :] + m[..., 6:, :, :]
    w = r.shape[-2]
    s2 = r[..., :-1, :] + r[..., 1:, :]
    s4 = s2[..., :-2, :] + s2[..., 2:, :]
    return s4[..., :w - 6, :] + s2[..., 4:w - 2, :] + r[..., 6:, :]


def _ssim_frames(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """SSIM of each frame of (F, H, W, 3) uint8 arrays."""
    x = a.astype(np.int32)
    y = b.astype(np.int32)
    # Integer window sums are exact; floating point starts after the box filter.
    sums = _box_sum(np.stack([x, y, x * x, y * y, x * y])).astype(np.float64)
    n = float(_WIN * _WIN)
    sx, sy, sxx, syy, sxy = sums
    mx, my = sx / n, sy / n
    cov_norm = 1.0 / (n - 1.0)  # sample covariance, as scikit-image
    vx = cov_norm * (sxx - sx * mx)
    vy = cov_norm * (syy - sy * my)
    vxy = cov_norm * (sxy - sx * my)
    c1 = (_K1 * _L) ** 2
    c2 = (_K2 * _L) ** 2
    s = ((2 * mx * my + c1) * (2 * vxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    # The valid region of a 7x7 window is exactly the image minus a 3-pixel border; the mean
    # over it and over channels equals scikit-image's per-channel mean.
    return s.reshape(s.shape[0], -1).mean(axis=1)


def ssim_per_frame(ref: np.ndarray, dist: np.ndarray) -> np.ndarray:
    """SSIM of each frame (mean over RGB channels), shape (frames,)."""
    a, b = _check_pair(ref, dist)
    if min(a.shape[1], a.shape[2]) < _WIN:
        raise ValueError(f"frames must be at least {_WIN}x{_WIN} for SSIM, got {a.shape[1:3]}")
    # One frame at a time: the temporaries (~4 MB at 256x256) then stay under glibc's mmap
    # threshold and are reused; big multi-frame batches page-fault fresh memory every call
    # and ran 2-3x slower here.
    return np.concatenate([_ssim_frames(a[i:i + 1], b[i:i + 1]) for i in range(a.shape[0])])


def ssim(ref: np.ndarray, dist: np.ndarray) -> float:
    """Mean SSIM over the frames of a clip (or of one frame)."""
    return float(np.mean(ssim_per_frame(ref, dist)))
