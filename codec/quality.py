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


class _Workspace:
    """Preallocated buffers for one frame shape.

    Fresh multi-megabyte temporaries page-fault on every call; on these VMs that cost more
    than the arithmetic (sys time rivalled user time), so every step writes into buffers
    kept from call to call.
    """

    def __init__(self, c: int, h: int, w: int):
        hv, wv = h - _WIN + 1, w - _WIN + 1
        self.m = np.empty((5, c, h, w), dtype=np.int32)
        self.cum = np.empty((5, c, h, w), dtype=np.int32)
        self.r = np.empty((5, c, h, wv), dtype=np.int32)
        self.s2 = np.empty((5, c, h - 1, wv), dtype=np.int32)
        self.s4 = np.empty((5, c, h - 3, wv), dtype=np.int32)
        self.box = np.empty((5, c, hv, wv), dtype=np.int32)
        self.f = np.empty((5, c, hv, wv), dtype=np.float32)
        self.t = np.empty((4, c, hv, wv), dtype=np.float32)


_WORKSPACES: dict[tuple[int, int, int], _Workspace] = {}


def _workspace(c: int, h: int, w: int) -> _Workspace:
    key = (c, h, w)
    ws = _WORKSPACES.get(key)
    if ws is None:
        if len(_WORKSPACES) > 4:
            _WORKSPACES.clear()
        ws = _WORKSPACES[key] = _Workspace(c, h, w)
    return ws


def _box_sum(ws: _Workspace) -> np.ndarray:
    """Sum of ``ws.m`` over every full 7x7 window of the last two axes, into ``ws.box``.

    Along the last axis a running sum (numpy's cumsum is fast there); along rows, shifted
    pair and quad sums (7 = 4 + 2 + 1), since cumsum along a non-last axis is several times
    slower. Integer sums stay exact: uint8 products summed over a row fit in int32.
    """
    assert _WIN == 7
    np.cumsum(ws.m, axis=-1, dtype=np.int32, out=ws.cum)
    r, c = ws.r, ws.cum
    r[..., 0] = c[..., 6]
    np.subtract(c[..., 7:], c[..., :-7], out=r[..., 1:])
    h = r.shape[-2]
    np.add(r[..., :-1, :], r[..., 1:, :], out=ws.s2)
    np.add(ws.s2[..., :-2, :], ws.s2[..., 2:, :], out=ws.s4)
    np.add(ws.s4[..., :h - 6, :], ws.s2[..., 4:h - 2, :], out=ws.box)
    np.add(ws.box, r[..., 6:, :], out=ws.box)
    return ws.box


def _ssim_frame(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM of one (H, W, 3) uint8 frame pair."""
    h, w, c = a.shape
    ws = _workspace(c, h, w)
    m = ws.m
    # Channel-first so rows are contiguous for the box filter.
    m[0] = a.transpose(2, 0, 1)
    m[1] = b.transpose(2, 0, 1)
    np.multiply(m[0], m[0], out=m[2])
    np.multiply(m[1], m[1], out=m[3])
    np.multiply(m[0], m[1], out=m[4])
    # float32 is exact for the window sums (< 2**24) and keeps SSIM within ~1e-5 of float64.
    f = ws.f
    f[...] = _box_sum(ws)
    sx, sy, sxx, syy, sxy = f
    n = float(_WIN * _WIN)
    cov_norm = 1.0 / (n - 1.0)  # sample covariance, as scikit-image
    c1 = (_K1 * _L) ** 2
    c2 = (_K2 * _L) ** 2
    mx, my, num, den = ws.t
    np.multiply(sx, 1.0 / n, out=mx)
    np.multiply(sy, 1.0 / n, out=my)
    # variances and covariance, in place over the sums
    sxx -= sx * mx
    syy -= sy * my
    sxy -= sx * my
    # num = (2 mx my + c1) (2 vxy + c2)
    np.multiply(mx, my, out=num)
    num *= 2.0
    num += c1
    sxy *= 2.0 * cov_norm
    sxy += c2
    num *= sxy
    # den = (mx^2 + my^2 + c1) (vx + vy + c2)
    np.multiply(mx, mx, out=den)
    np.multiply(my, my, out=mx)
    den += mx
    den += c1
    sxx += syy
    sxx *= cov_norm
    sxx += c2
    den *= sxx
    num /= den
    # The valid region of a 7x7 window is exactly the image minus a 3-pixel border; the mean
    # over it and over channels equals scikit-image's mean of per-channel means.
    return float(num.mean(dtype=np.float64))


def ssim_per_frame(ref: np.ndarray, dist: np.ndarray) -> np.ndarray:
    """SSIM of each frame (mean over RGB channels), shape (frames,)."""
    a, b = _check_pair(ref, dist)
    if min(a.shape[1], a.shape[2]) < _WIN:
        raise ValueError(f"frames must be at least {_WIN}x{_WIN} for SSIM, got {a.shape[1:3]}")
    # One frame at a time keeps the temporaries small (~4 MB at 256x256) so the allocator
    # reuses them; multi-frame batches page-faulted fresh memory and ran 2-3x slower here.
    return np.array([_ssim_frame(a[i], b[i]) for i in range(a.shape[0])])


def ssim(ref: np.ndarray, dist: np.ndarray) -> float:
    """Mean SSIM over the frames of a clip (or of one frame)."""
    return float(np.mean(ssim_per_frame(ref, dist)))
