"""Pixel chunks (real PyAV encode/decode) and the numpy PSNR/SSIM against scikit-image."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from codec import pixel, quality
from origin import source as src

FPS = 30.0


@pytest.fixture(scope="module")
def clip() -> np.ndarray:
    """2.5 s of a synthetic video at 64x48 (real photo texture and motion)."""
    spec = src.synthetic_spec(seed=3, index=1, n_frames=75, fps=FPS)
    return np.concatenate(list(src.iter_source_chunks(spec, 64, 48, FPS, 75, 30)))


@pytest.mark.parametrize("codec", pixel.available_codecs())
def test_chunks_decode_independently(clip, codec):
    chunks = pixel.encode_chunks(clip, codec, 300, FPS, 30)
    assert len(chunks) == 3
    decoded = []
    # Decode in reverse order, each on its own decoder: no chunk needs another.
    for i in reversed(range(3)):
        frames = pixel.decode_pixel_chunk(chunks[i], codec, expected_frames=30 if i < 2 else 15)
        assert frames.dtype == np.uint8 and frames.shape[1:] == (48, 64, 3)
        decoded.insert(0, frames)
    out = np.concatenate(decoded)
    assert out.shape == clip.shape
    # Real encoding at 300 kbps of 64x48 is close to the source, not garbage.
    assert quality.psnr_db(clip, out) > 28
    assert quality.ssim(clip, out) > 0.8


def test_bitrate_ladder_orders_size_and_quality(clip):
    low = pixel.encode_chunks(clip, "h264", 50, FPS, 30)
    high = pixel.encode_chunks(clip, "h264", 800, FPS, 30)
    assert sum(map(len, low)) < sum(map(len, high))
    q_low = quality.psnr_db(clip, np.concatenate([pixel.decode_pixel_chunk(c, "h264")
                                                  for c in low]))
    q_high = quality.psnr_db(clip, np.concatenate([pixel.decode_pixel_chunk(c, "h264")
                                                   for c in high]))
    assert q_high > q_low + 2


def test_corrupt_chunks_raise(clip):
    chunk = pixel.encode_chunks(clip[:30], "h264", 300, FPS, 30)[0]
    with pytest.raises(pixel.ChunkDecodeError):
        pixel.decode_pixel_chunk(b"", "h264")
    with pytest.raises(pixel.ChunkDecodeError):
        pixel.decode_pixel_chunk(bytes(range(256)) * 4, "h264")
    with pytest.raises(pixel.ChunkDecodeError, match="corrupt|expected 30"):
        pixel.decode_pixel_chunk(chunk[: len(chunk) // 3], "h264", expected_frames=30)
    with pytest.raises(pixel.ChunkDecodeError, match="unknown pixel codec"):
        pixel.decode_pixel_chunk(chunk, "vp9")


def test_encoder_rejects_bad_frames():
    enc = pixel.PixelEncoder("h264", 100, 64, 48, FPS, 30)
    with pytest.raises(ValueError, match="expected uint8 frames"):
        enc.add(np.zeros((2, 48, 64, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="even"):
        pixel.PixelEncoder("h264", 100, 63, 48, FPS, 30)


def _noisy(img: np.ndarray, sd: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(img.astype(float) + rng.normal(0, sd, img.shape), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("sd", [2.0, 10.0, 40.0])
def test_quality_matches_scikit_image(clip, sd):
    ref = clip[:4]
    dist = _noisy(ref, sd, int(sd))
    ours = quality.ssim_per_frame(ref, dist)
    theirs = [structural_similarity(r, d, channel_axis=-1, data_range=255)
              for r, d in zip(ref, dist, strict=True)]
    np.testing.assert_allclose(ours, theirs, atol=1e-4)
    p_ours = quality.psnr_db_per_frame(ref, dist)
    p_theirs = [peak_signal_noise_ratio(r, d, data_range=255)
                for r, d in zip(ref, dist, strict=True)]
    np.testing.assert_allclose(p_ours, p_theirs, rtol=1e-9)


def test_quality_edges(clip):
    f = clip[0]
    assert quality.psnr_db(f, f) == quality.PSNR_CAP_DB
    assert quality.ssim(f, f) == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(ValueError, match="shape mismatch"):
        quality.ssim(clip[:2], clip[:3])
    with pytest.raises(TypeError, match="uint8"):
        quality.psnr_db(f.astype(np.float32), f.astype(np.float32))
