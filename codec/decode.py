"""Decoding of prompt chunks on the playback path (``codec.load_decoder``).

``decoder = load_decoder(model="local" | path, device="cpu" | "cuda", threads=N)``;
``frames, state = decoder.decode_chunk(data, prev_state=None)`` -> (F,H,W,3) uint8.

Every chunk decodes on its own (out-of-order preloading needs no earlier chunk): the
temporal chain restarts at each chunk from the initial latent it carries (a video's first
chunk) or from zeros. ``prev_state`` is accepted and ignored; the returned state is
``{"model_hash": <the model's hex sha256>, "n_frames": <frames decoded>}``. On CPU the
same bytes give bit-identical frames (fixed thread count, ``inference_mode``); on CUDA the
model runs in fp16.
"""

from __future__ import annotations

import threading

import numpy as np
import torch

from codec import wire
from codec.encode import decode_prompt_chunk
from codec.wire import PromptChunkError


class PromptDecoder:
    """Holds one generator; decodes whole chunks (all frames in one call)."""

    def __init__(self, gen, threads: int | None = None):
        self.gen = gen
        self.threads = threads
        self.model_hash = gen.model_hash
        self._lock = threading.Lock()

    def check(self, chunk: wire.PromptChunk) -> None:
        if chunk.kind != self.gen.kind:
            raise PromptChunkError(f"chunk is for a {chunk.kind!r} generator, this decoder "
                                   f"holds {self.gen.kind!r}")
        if chunk.model_hash != bytes.fromhex(self.model_hash)[:16]:
            raise PromptChunkError(f"chunk was fitted with model {chunk.model_hash.hex()}..., "
                                   f"this decoder holds {self.model_hash[:32]}...")
        lat, tokens = self._shapes(chunk.width, chunk.height)
        if lat != tuple(chunk.latent_shape) or tokens != chunk.tokens \
                or self.gen.token_dim != chunk.token_dim:
            raise PromptChunkError(f"chunk shapes (tokens {chunk.tokens}x{chunk.token_dim}, "
                                   f"latent {chunk.latent_shape}) do not fit the model at "
                                   f"{chunk.width}x{chunk.height} (tokens {tokens}x"
                                   f"{self.gen.token_dim}, latent {lat})")

    def _shapes(self, width: int, height: int) -> tuple[tuple[int, ...], int]:
        """(latent shape, tokens) the model makes at this frame size; PromptChunkError for a
        size it cannot make."""
        try:
            return (tuple(self.gen.latent_shape(height, width)),
                    self.gen.tokens(height, width))
        except ValueError as exc:
            raise PromptChunkError(str(exc)) from None

    def warm_up(self, width: int, height: int, n_frames: int = 2) -> None:
        """Decode one synthetic chunk of this frame size (zero prompts), so the first real
        chunk does not pay for lazy initialisation and first-call allocations; the model
        itself is already loaded. Frame sizes the model cannot make raise PromptChunkError."""
        lat, tokens = self._shapes(width, height)
        pos = wire.keyframe_positions(n_frames, 10)
        k, d = len(pos), self.gen.token_dim
        chunk = wire.PromptChunk(
            kind=self.gen.kind, model_hash=bytes.fromhex(self.model_hash)[:16], width=width,
            height=height, n_frames=n_frames, rank=1, positions=pos, latent_shape=lat, seed=0,
            u_q=np.zeros((k, tokens, 1), np.uint8), v_q=np.zeros((k, 1, d), np.uint8),
            quant=np.tile(np.array([1.0, 0.0, 1.0, 0.0], np.float32), (k, 1)))
        self.decode_chunk(wire.pack(chunk))

    def decode_chunk(self, data: bytes, prev_state=None):
        """All frames of one chunk: ((F,H,W,3) uint8, state). Bad input -> PromptChunkError."""
        chunk = wire.unpack(data)
        self.check(chunk)
        with self._lock:
            if self.threads:
                torch.set_num_threads(self.threads)
            frames = decode_prompt_chunk(self.gen, chunk)
        return frames, {"model_hash": self.model_hash, "n_frames": chunk.n_frames}


def load_decoder(model: str = "local", device: str = "cpu", threads: int | None = None):
    """Build a decoder once per worker. model: ``local``, a local-model checkpoint, or a
    diffusers sd-turbo directory. device: ``cpu`` or ``cuda`` (fp16). threads: CPU threads."""
    from codec.generators import load_generator

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' requested but CUDA is not available")
    if threads:
        torch.set_num_threads(int(threads))
    dtype = torch.float16 if device.startswith("cuda") else torch.float32
    gen = load_generator(model, device=device, dtype=dtype)
    return PromptDecoder(gen, threads=threads)
