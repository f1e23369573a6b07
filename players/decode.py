"""The decode worker: one chunk in, frames and timing out, per decode device.

``DecodeWorker(device)`` decodes one chunk at a time (a device decodes serially; the session
model hands it the next chunk when it is free):
- pixel chunks (``pixel/<codec>/<kbps>``) for real with PyAV (``codec.pixel.decode_pixel_chunk``);
- prompt chunks (``prompt/<model>/r<rank>``) with the prompt codec's decoder,
  ``codec.load_decoder(model=..., device=..., threads=...)`` then
  ``decoder.decode_chunk(data, prev_state=None) -> (frames, state)``; torch is imported only
  there, on the first prompt chunk, and the decoder is built once per worker and model.

``hold_s``: the device profile's latency for this chunk; when given and the real decode was
faster, the worker sleeps the remainder, so a slow phone GPU or NPU can be studied on this
machine. ``mode="profile"`` skips the real work and only holds (for scale studies).

``decode`` is blocking; ``decode_async`` runs it on the worker's own thread (PyAV and torch
release the GIL), so the player's event loop and playback clock keep real time. A chunk the
decoder rejects raises ``DecodeError`` (a ValueError naming the representation); so does
every chunk of a prompt model that cannot be loaded (missing checkpoint, unknown name: the
load is tried once per worker and model, and its one-line reason repeated). The player
turns each into a ``decode_error`` event and plays on.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from codec.profiles import DECODE_THREADS  # pure Python: no torch at import

MODES = ("real", "profile")
_PIXEL_RE = re.compile(r"^pixel/([a-z0-9]+)/[0-9]+$")
_PROMPT_RE = re.compile(r"^prompt/([A-Za-z0-9][A-Za-z0-9_.-]*)/r([0-9]+)$")


class DecodeError(ValueError):
    """A chunk could not be decoded (corrupt, wrong frame count, unknown representation)."""


@dataclass(frozen=True)
class DecodeResult:
    """frames: decoded frames. decode_s: wall seconds the decode took, hold included.
    device: where it ran. work_s: seconds of actual decoding (0 in profile mode)."""

    frames: int
    decode_s: float
    device: str
    work_s: float = 0.0


class DecodeWorker:
    """Decodes chunks for one device.

    device: ``cpu`` | ``gpu`` | ``npu`` | ... (the name the session uses); torch_device: the
    torch device prompt decoders run on (``cuda`` when the name is ``gpu`` and CUDA exists,
    else ``cpu``). mode: ``real`` or ``profile``. threads: torch threads for prompt
    models, by default ``codec.profiles.DECODE_THREADS``, the count the catalog's measured
    ``decode_cost`` and the ``cpu-local`` profile were measured with. prompt_models: model
    name -> what ``codec.load_decoder(model=...)`` takes (a local checkpoint path); names
    not listed are passed as they are (``local``).
    """

    def __init__(self, device: str, mode: str = "real", threads: int = DECODE_THREADS,
                 torch_device: str | None = None,
                 prompt_models: Mapping[str, str] | None = None,
                 load_decoder: Callable[..., Any] | None = None) -> None:
        if mode not in MODES:
            raise ValueError(f"decode mode: expected one of {MODES}, got {mode!r}")
        self.device = device
        self.mode = mode
        self.threads = threads
        self._torch_device = torch_device
        self._prompt_models = dict(prompt_models or {})
        self._load_decoder = load_decoder
        self._decoders: dict[str, Any] = {}
        self._load_errors: dict[str, str] = {}
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None

    def warm_up(self, prompts: Iterable[tuple[str, int, int]] = ()) -> None:
        """Before the session clock starts: import the pixel decoder (PyAV's first import
        costs ~0.15 s) and load the model of each prompt representation this worker will
        decode, given as (representation, width, height), with one synthetic decode at
        that frame size (once per model and size). Measured here: torch + diffusers + the
        local checkpoint take ~3.5 s alone and 20-25 s on a machine shared by four players,
        which a first chunk would otherwise spend stalled. A model that cannot load is
        remembered and reported per chunk, as in ``decode``."""
        if self.mode != "real":
            return
        import av  # noqa: F401

        import codec.pixel  # noqa: F401

        done = set()
        for representation, width, height in prompts:
            m = _PROMPT_RE.match(representation)
            if m is None:
                raise DecodeError(f"warm_up: {representation!r} is not a prompt "
                                  f"representation (expected prompt/<model>/r<rank>)")
            model = m.group(1)
            if (model, width, height) in done:
                continue
            done.add((model, width, height))
            try:
                dec = self._prompt_decoder(model, representation)
            except DecodeError:
                continue  # remembered; every chunk of this model reports it
            try:
                dec.warm_up(width, height)
            except ValueError:
                pass  # a frame size the model cannot make: each chunk will say so

    # ------------------------------------------------------------------ blocking API
    def decode(self, chunk_bytes: bytes, representation: str, expected_frames: int | None = None,
               hold_s: float | None = None) -> DecodeResult:
        """Decode one chunk of ``representation``; hold to ``hold_s`` seconds when given."""
        t0 = time.perf_counter()
        if self.mode == "profile":
            if hold_s is None:
                raise DecodeError(f"{representation}: profile decode mode needs the device "
                                  f"profile's latency for {self.device!r}")
            frames = int(expected_frames or 0)
            work_s = 0.0
        else:
            frames = self._decode_real(chunk_bytes, representation, expected_frames)
            work_s = time.perf_counter() - t0
        if hold_s is not None:
            left = hold_s - (time.perf_counter() - t0)
            if left > 0:
                time.sleep(left)
        return DecodeResult(frames, time.perf_counter() - t0, self.device, work_s)

    def _decode_real(self, data: bytes, representation: str, expected_frames: int | None) -> int:
        m = _PIXEL_RE.match(representation)
        if m:
            from codec.pixel import ChunkDecodeError, decode_pixel_chunk

            try:
                frames = decode_pixel_chunk(data, m.group(1), expected_frames)
            except ChunkDecodeError as exc:
                raise DecodeError(f"{representation}: {exc}") from None
            return int(frames.shape[0])
        m = _PROMPT_RE.match(representation)
        if m:
            decoder = self._prompt_decoder(m.group(1), representation)
            try:
                frames, _state = decoder.decode_chunk(data, prev_state=None)
            except ValueError as exc:  # the codec's PromptChunkError is a ValueError
                raise DecodeError(f"{representation}: {exc}") from None
            n = int(getattr(frames, "shape", (len(frames),))[0])
            if expected_frames is not None and n != expected_frames:
                raise DecodeError(f"{representation}: decoded to {n} frames, expected "
                                  f"{expected_frames}")
            return n
        raise DecodeError(f"unknown representation {representation!r} (expected "
                          f"pixel/<codec>/<kbps> or prompt/<model>/r<rank>)")

    def _prompt_decoder(self, model: str, representation: str):
        dec = self._decoders.get(model)
        if dec is not None:
            return dec
        if model in self._load_errors:  # a failed load is not retried for every chunk
            raise DecodeError(f"{representation}: {self._load_errors[model]}")
        load = self._load_decoder
        if load is None:
            from codec import load_decoder as load  # lazy: torch only when prompts play
        target = self._prompt_models.get(model, model)
        try:
            dec = load(model=target, device=self.torch_device(), threads=self.threads)
        except Exception as exc:  # noqa: BLE001
            # Whatever stops the model loading (missing file, unknown name, bad weights,
            # no CUDA) makes every chunk of it undecodable: report it per chunk, as a
            # decode error, instead of ending the player.
            where = "" if target == model or str(target) in str(exc) else f" ({target})"
            msg = (f"prompt model {model!r}{where} cannot be loaded: "
                   f"{type(exc).__name__}: {exc}").splitlines()[0]
            self._load_errors[model] = msg
            raise DecodeError(f"{representation}: {msg}") from None
        self._decoders[model] = dec
        return dec

    def torch_device(self) -> str:
        if self._torch_device is not None:
            return self._torch_device
        if self.device in ("gpu", "cuda"):
            import torch

            return "cuda" if torch.cuda.is_available() else "cpu"
        return "cpu"

    # ------------------------------------------------------------------ async API
    async def decode_async(self, chunk_bytes: bytes, representation: str,
                           expected_frames: int | None = None,
                           hold_s: float | None = None) -> DecodeResult:
        """``decode`` on this worker's own thread (one at a time per device)."""
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(
                max_workers=1, thread_name_prefix=f"decode-{self.device}")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self.decode, chunk_bytes, representation,
                                          expected_frames, hold_s)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
