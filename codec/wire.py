"""The prompt chunk wire format: compact, self-describing, checksummed; numpy only.

Layout (little-endian)::

    magic     4s   b"PBPC"
    version   u8   1
    flags     u8   bit 0: payload is zlib-compressed; bit 1: an initial latent follows
    kind      u8   generator: 0 = local, 1 = sd-turbo
    rank      u8   r (1..255)
    model     16s  first 16 bytes of the model's sha256
    width     u16  frame width (pixels)
    height    u16  frame height (pixels)
    frames    u16  frames in the chunk
    keys      u16  number of keyframes K
    tokens    u16  context tokens L
    token_dim u16  context dims D
    lat_c, lat_h, lat_w  u16 x3  latent shape (for the initial latent and the noise)
    seed      u32  noise seed shared by sender and receiver
    positions u16 x K                      keyframe frame indices, strictly increasing,
                                           first 0, last frames - 1 (or 0 when frames = 1)
    quant     f32 x 4K: per keyframe (U scale, U zero point, V scale, V zero point)
    init      f32 x 2 (scale, zero point)  only with flag bit 1
    payload_len u32
    payload   K x (U: L*r uint8, V: r*D uint8), then init latent lat_c*lat_h*lat_w uint8
    crc32     u32  of every byte before it

Dequantisation: ``x = (q - zero) * scale``; scale and zero point must be finite and keep
``x`` finite in float32. The payload may inflate only to the size the header's shapes give
(at most ``MAX_PAYLOAD_BYTES``); decompression stops there. Anything that does not parse
exactly raises ``PromptChunkError`` (a ``ValueError``) saying what is wrong; no pickle
anywhere.
"""

from __future__ import annotations

import itertools
import struct
import zlib
from dataclasses import dataclass

import numpy as np

MAGIC = b"PBPC"
VERSION = 1
KINDS = {"local": 0, "sd-turbo": 1}
KIND_NAMES = {v: k for k, v in KINDS.items()}
_FIXED = struct.Struct("<4sBBBB16sHHHHHHHHHI")
_FLAG_ZLIB = 1
_FLAG_INIT = 2
# Frames per chunk: 20 s at 30 fps. A chunk decodes in one batch, so a hostile header
# claiming thousands of frames would cost a player gigabytes before any check could fail.
MAX_FRAMES = 600
# Decoded payload cap (U, V and the initial latent): far above any real chunk (sd-turbo at
# rank 64 with 30 keyframes is ~2.1 MB), far below what would hurt a player's memory.
MAX_PAYLOAD_BYTES = 64 << 20


class PromptChunkError(ValueError):
    """A prompt chunk is truncated, corrupt, or made for another model/frame size."""


@dataclass(frozen=True)
class PromptChunk:
    """One decoded-from-bytes (or about-to-be-encoded) prompt chunk.

    u_q: (K, L, r) uint8; v_q: (K, r, D) uint8; quant: (K, 4) float32 rows of
    (U scale, U zero, V scale, V zero); init_q: (C, h, w) uint8 or None, init_quant
    (scale, zero). model_hash: 16 bytes.
    """

    kind: str
    model_hash: bytes
    width: int
    height: int
    n_frames: int
    rank: int
    positions: tuple[int, ...]
    latent_shape: tuple[int, int, int]
    seed: int
    u_q: np.ndarray
    v_q: np.ndarray
    quant: np.ndarray
    init_q: np.ndarray | None = None
    init_quant: tuple[float, float] = (0.0, 0.0)

    @property
    def tokens(self) -> int:
        return int(self.u_q.shape[1])

    @property
    def token_dim(self) -> int:
        return int(self.v_q.shape[2])

    def u(self) -> np.ndarray:
        """Dequantised U, (K, L, r) float32."""
        s, z = self.quant[:, 0], self.quant[:, 1]
        return (self.u_q.astype(np.float32) - z[:, None, None]) * s[:, None, None]

    def v(self) -> np.ndarray:
        s, z = self.quant[:, 2], self.quant[:, 3]
        return (self.v_q.astype(np.float32) - z[:, None, None]) * s[:, None, None]

    def init_latent(self) -> np.ndarray | None:
        if self.init_q is None:
            return None
        s, z = self.init_quant
        return (self.init_q.astype(np.float32) - np.float32(z)) * np.float32(s)


def quantise(x: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Asymmetric 8-bit quantisation of a whole tensor: (uint8, scale, zero point)."""
    lo, hi = float(min(x.min(), 0.0)), float(max(x.max(), 0.0))
    scale = (hi - lo) / 255.0 if hi > lo else 1.0
    zero = float(np.clip(np.round(-lo / scale), 0, 255))
    q = np.clip(np.round(x / scale + zero), 0, 255).astype(np.uint8)
    return q, np.float32(scale).item(), zero


def keyframe_positions(n_frames: int, key_interval: int) -> tuple[int, ...]:
    """Keyframes every ``key_interval`` frames, first and last frame always included
    (so a chunk decodes on its own): 30 frames, interval 10 -> (0, 10, 19, 29)."""
    if n_frames < 1 or key_interval < 1:
        raise ValueError("n_frames and key_interval must be >= 1")
    if n_frames == 1:
        return (0,)
    k = -(-(n_frames - 1) // key_interval) + 1
    return tuple(round(i * (n_frames - 1) / (k - 1)) for i in range(k))


def pack(chunk: PromptChunk, compress: bool = True) -> bytes:
    """Serialise a chunk (shapes checked)."""
    k = len(chunk.positions)
    if not 1 <= chunk.n_frames <= MAX_FRAMES:
        raise ValueError(f"{chunk.n_frames} frames: a prompt chunk holds 1..{MAX_FRAMES} "
                         f"(use shorter chunks)")
    _check_positions(chunk.positions, chunk.n_frames)
    if chunk.u_q.dtype != np.uint8 or chunk.v_q.dtype != np.uint8:
        raise ValueError("u_q and v_q must be uint8")
    if chunk.u_q.shape[0] != k or chunk.v_q.shape[0] != k or chunk.u_q.shape[2] != chunk.rank \
            or chunk.v_q.shape[1] != chunk.rank or chunk.quant.shape != (k, 4):
        raise ValueError("inconsistent U/V/quant shapes")
    flags = 0
    body = b"".join(chunk.u_q[i].tobytes() + chunk.v_q[i].tobytes() for i in range(k))
    if chunk.init_q is not None:
        if tuple(chunk.init_q.shape) != tuple(chunk.latent_shape):
            raise ValueError("init latent shape differs from latent_shape")
        flags |= _FLAG_INIT
        body += chunk.init_q.astype(np.uint8).tobytes()
    if compress:
        z = zlib.compress(body, 9)
        if len(z) < len(body):
            body, flags = z, flags | _FLAG_ZLIB
    c, h, w = chunk.latent_shape
    head = _FIXED.pack(MAGIC, VERSION, flags, KINDS[chunk.kind], chunk.rank,
                       chunk.model_hash[:16].ljust(16, b"\0"), chunk.width, chunk.height,
                       chunk.n_frames, k, chunk.tokens, chunk.token_dim, c, h, w,
                       chunk.seed & 0xFFFFFFFF)
    head += struct.pack(f"<{k}H", *chunk.positions)
    head += chunk.quant.astype("<f4").tobytes()
    if chunk.init_q is not None:
        head += struct.pack("<2f", *chunk.init_quant)
    out = head + struct.pack("<I", len(body)) + body
    return out + struct.pack("<I", zlib.crc32(out))


def _inflate(body: bytes, expected: int) -> bytes:
    """Decompress at most ``expected`` + 1 bytes: a small hostile payload cannot inflate
    past what the header's shapes allow (zlib reaches ~1000:1) before the size check."""
    d = zlib.decompressobj()
    try:
        out = d.decompress(body, expected + 1)
    except zlib.error as exc:
        raise PromptChunkError(f"payload does not decompress: {exc}") from None
    if len(out) > expected or d.unconsumed_tail:
        raise PromptChunkError(f"payload inflates past the {expected} bytes its header's "
                               f"shapes allow")
    if not d.eof:
        raise PromptChunkError("payload does not decompress: the zlib stream is truncated")
    if d.unused_data:
        raise PromptChunkError(f"payload has {len(d.unused_data)} bytes after its zlib stream")
    return out


def _check_positions(positions, n_frames: int) -> None:
    if not positions:
        raise PromptChunkError("no keyframes")
    if positions[0] != 0 or positions[-1] != n_frames - 1 or any(
            b <= a for a, b in itertools.pairwise(positions)):
        raise PromptChunkError(f"keyframe positions {list(positions)} must rise strictly from "
                               f"0 to the last frame ({n_frames - 1})")


def unpack(data: bytes) -> PromptChunk:
    """Parse and check a chunk; every defect raises ``PromptChunkError``."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise PromptChunkError(f"expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) < _FIXED.size + 8:
        raise PromptChunkError(f"truncated: {len(data)} bytes is shorter than the "
                               f"{_FIXED.size + 8}-byte minimum")
    (magic, version, flags, kind_id, rank, model, width, height, n_frames, k, tokens,
     token_dim, c, h, w, seed) = _FIXED.unpack_from(data, 0)
    if magic != MAGIC:
        raise PromptChunkError(f"not a prompt chunk: magic {magic!r}, expected {MAGIC!r}")
    if version != VERSION:
        raise PromptChunkError(f"unsupported prompt chunk version {version} (this decoder "
                               f"reads version {VERSION})")
    crc_stored = struct.unpack_from("<I", data, len(data) - 4)[0]
    if zlib.crc32(data[:-4]) != crc_stored:
        raise PromptChunkError("checksum mismatch: the chunk is corrupt or truncated")
    if kind_id not in KIND_NAMES:
        raise PromptChunkError(f"unknown generator kind {kind_id}")
    if flags & ~(_FLAG_ZLIB | _FLAG_INIT):
        raise PromptChunkError(f"unknown flags 0x{flags:02x}")
    if rank < 1 or k < 1 or tokens < 1 or token_dim < 1 or not 1 <= n_frames <= MAX_FRAMES \
            or width < 1 or height < 1 or min(c, h, w) < 1 or rank > min(tokens, token_dim):
        raise PromptChunkError(f"bad shapes: rank {rank}, keyframes {k}, tokens {tokens}x"
                               f"{token_dim}, frames {n_frames}, size {width}x{height}, "
                               f"latent {c}x{h}x{w}")
    off = _FIXED.size
    need = off + 2 * k + 16 * k + (8 if flags & _FLAG_INIT else 0) + 4 + 4
    if len(data) < need:
        raise PromptChunkError(f"truncated header: {len(data)} bytes, need at least {need}")
    positions = struct.unpack_from(f"<{k}H", data, off)
    off += 2 * k
    _check_positions(positions, n_frames)
    quant = np.frombuffer(data, "<f4", 4 * k, off).reshape(k, 4).astype(np.float32)
    off += 16 * k
    init_quant = (0.0, 0.0)
    if flags & _FLAG_INIT:
        init_quant = struct.unpack_from("<2f", data, off)
        off += 8
    params = np.concatenate([quant.reshape(-1, 2), np.float32([init_quant])])
    if not np.all(np.isfinite(params)):
        raise PromptChunkError("non-finite quantisation parameters (NaN or inf scale/zero point)")
    # (q - zero) * scale for q in 0..255 must stay finite in float32, or frames turn to NaN.
    reach = np.abs(params[:, 0].astype(np.float64)) * (np.abs(params[:, 1]) + 255.0)
    if not np.all(reach < np.finfo(np.float32).max):
        raise PromptChunkError("quantisation parameters out of range: scale x (zero point + "
                               "255) overflows float32")
    (plen,) = struct.unpack_from("<I", data, off)
    off += 4
    if off + plen + 4 != len(data):
        raise PromptChunkError(f"payload length {plen} does not match the chunk size "
                               f"({len(data) - off - 4} bytes present)")
    per_key = tokens * rank + rank * token_dim
    n_init = c * h * w if flags & _FLAG_INIT else 0
    expected = k * per_key + n_init
    if expected > MAX_PAYLOAD_BYTES:
        raise PromptChunkError(f"header shapes claim a {expected}-byte payload, more than the "
                               f"{MAX_PAYLOAD_BYTES}-byte limit")
    body = data[off:off + plen]
    if flags & _FLAG_ZLIB:
        body = _inflate(body, expected)
    if len(body) != expected:
        raise PromptChunkError(f"payload has {len(body)} bytes, expected "
                               f"{expected} for {k} keyframes of rank {rank}")
    arr = np.frombuffer(body, np.uint8)
    keys = arr[:k * per_key].reshape(k, per_key)
    u_q = keys[:, :tokens * rank].reshape(k, tokens, rank).copy()
    v_q = keys[:, tokens * rank:].reshape(k, rank, token_dim).copy()
    init_q = arr[k * per_key:].reshape(c, h, w).copy() if n_init else None
    return PromptChunk(kind=KIND_NAMES[kind_id], model_hash=model, width=width, height=height,
                       n_frames=n_frames, rank=rank, positions=tuple(positions),
                       latent_shape=(c, h, w), seed=seed, u_q=u_q, v_q=v_q, quant=quant,
                       init_q=init_q, init_quant=tuple(float(x) for x in init_quant))
