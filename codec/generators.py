"""Generators: what turns a prompt (context tokens) plus a starting latent into frames.

Two implementations share one small interface (used by ``codec.encode`` and
``codec.decode``):

- ``LocalGenerator`` (``local``, the default): the project's own trained model
  (``codec.model.LocalModel``, checkpoint in ``codec/weights``), with an amortised encoder.
- ``SdTurboGenerator`` (``sd-turbo``): SD-Turbo's structure from a local diffusers
  directory (``unet/``, ``vae/`` with ``AutoencoderTiny`` or ``AutoencoderKL``,
  ``scheduler/``), loaded with ``local_files_only=True``; one Euler-ancestral step at the
  scheduler's first (trailing) timestep. No hub access, ever.

Interface: ``kind``, ``model_hash`` (hex sha256), ``tokens(h, w)``, ``token_dim``,
``latent_shape(h, w)``, ``generate(ctx, z_start) -> latent``, ``decode(latent) -> frames in
[0, 1]`` (B,3,H,W), ``initial_context(frames) -> (B,L,D) | None``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch


class LocalGenerator:
    kind = "local"

    def __init__(self, path=None, device: str = "cpu", dtype=torch.float32):
        from codec import weights

        model, meta, digest = weights.load(path)
        self.meta = meta
        self.model_hash = digest
        self.device = torch.device(device)
        self.dtype = dtype
        self.model = model.to(self.device, dtype=dtype).to(memory_format=torch.channels_last)
        self.token_dim = model.token_dim

    def tokens(self, height: int, width: int) -> int:
        gh, gw = self.model.grid(height, width)
        return gh * gw

    def latent_shape(self, height: int, width: int) -> tuple[int, int, int]:
        gh, gw = self.model.grid(height, width)
        return (self.model.latent_channels, gh, gw)

    def generate(self, ctx: torch.Tensor, z_start: torch.Tensor) -> torch.Tensor:
        return self.model.generate(ctx, z_start.contiguous(memory_format=torch.channels_last))

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        return self.model.decode_latent(latent.contiguous(memory_format=torch.channels_last))

    def initial_context(self, frames: torch.Tensor) -> torch.Tensor | None:
        return self.model.encode_context(frames.contiguous(memory_format=torch.channels_last))

    def parameters(self):
        return self.model.parameters()


def _dir_hash(root: Path) -> str:
    """sha256 over the weight and config files of a diffusers directory (sorted paths)."""
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.suffix in (".safetensors", ".bin", ".json"):
            h.update(str(p.relative_to(root)).encode())
            with open(p, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
    return h.hexdigest()


class SdTurboGenerator:
    """SD-Turbo-style one-step generator from a local diffusers directory."""

    kind = "sd-turbo"
    TOKENS = 77

    def __init__(self, path, device: str = "cpu", dtype=torch.float32):
        from diffusers import (
            AutoencoderKL,
            AutoencoderTiny,
            EulerAncestralDiscreteScheduler,
            UNet2DConditionModel,
        )

        root = Path(path)
        if not (root / "unet").is_dir() or not (root / "vae").is_dir():
            raise FileNotFoundError(f"{root}: an sd-turbo directory needs unet/ and vae/ "
                                    f"(diffusers save_pretrained layout)")
        self.device = torch.device(device)
        self.dtype = dtype
        self.unet = UNet2DConditionModel.from_pretrained(root / "unet", local_files_only=True)
        vae_cfg = json.loads((root / "vae" / "config.json").read_text())
        vae_cls = AutoencoderTiny if vae_cfg.get("_class_name") == "AutoencoderTiny" \
            else AutoencoderKL
        self.vae = vae_cls.from_pretrained(root / "vae", local_files_only=True)
        if (root / "scheduler").is_dir():
            self.scheduler = EulerAncestralDiscreteScheduler.from_pretrained(
                root / "scheduler", local_files_only=True)
        else:
            self.scheduler = EulerAncestralDiscreteScheduler(timestep_spacing="trailing")
        for m in (self.unet, self.vae):
            m.to(self.device, dtype=dtype).eval().requires_grad_(False)
        self.model_hash = _dir_hash(root)
        self.token_dim = int(self.unet.config.cross_attention_dim)
        if isinstance(self.vae, AutoencoderTiny):
            self.vae_scale = 2 ** (len(self.vae.config.decoder_block_out_channels) - 1)
        else:
            self.vae_scale = 2 ** (len(self.vae.config.block_out_channels) - 1)
        self.scaling = float(getattr(self.vae.config, "scaling_factor", 1.0) or 1.0)
        # One step: sigma and timestep of the scheduler's first step (t = 999, trailing).
        self.scheduler.set_timesteps(1)
        self.timestep = self.scheduler.timesteps[0]
        self.sigma = float(self.scheduler.sigmas[0])

    def tokens(self, height: int, width: int) -> int:
        return self.TOKENS

    def latent_shape(self, height: int, width: int) -> tuple[int, int, int]:
        if height % self.vae_scale or width % self.vae_scale:
            raise ValueError(f"frame size {width}x{height}: must be multiples of {self.vae_scale}")
        return (int(self.unet.config.in_channels), height // self.vae_scale,
                width // self.vae_scale)

    def generate(self, ctx: torch.Tensor, z_start: torch.Tensor) -> torch.Tensor:
        # Euler ancestral from sigma_max to 0 in one step: sigma_up = 0, so no added noise;
        # x0 = x - sigma * eps (epsilon prediction), as the scheduler's step computes.
        x = z_start * self.sigma
        model_in = x / (self.sigma ** 2 + 1) ** 0.5
        t = self.timestep.to(self.device).expand(x.shape[0])
        eps = self.unet(model_in, t, encoder_hidden_states=ctx, return_dict=False)[0]
        if self.scheduler.config.prediction_type == "v_prediction":
            return eps * (-self.sigma / (self.sigma ** 2 + 1) ** 0.5) + x / (self.sigma ** 2 + 1)
        return x - self.sigma * eps

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        img = self.vae.decode(latent / self.scaling, return_dict=False)[0]
        return img * 0.5 + 0.5

    def initial_context(self, frames: torch.Tensor) -> torch.Tensor | None:
        return None

    def parameters(self):
        return list(self.unet.parameters()) + list(self.vae.parameters())


def model_kind(model) -> str:
    """Which generator ``model`` names, without loading it: ``local`` for ``local`` (the
    committed checkpoint), an existing local-model ``.safetensors`` file or a directory
    holding ``local.safetensors``; ``sd-turbo`` for a diffusers directory with ``unet/``.
    Anything else raises ``FileNotFoundError`` saying what was expected."""
    if model in (None, "local"):
        return "local"
    p = Path(model)
    if p.is_dir() and (p / "unet").is_dir():
        return "sd-turbo"
    if p.suffix == ".safetensors":
        if not p.is_file():
            raise FileNotFoundError(f"model {str(model)!r}: no such local-model weights file "
                                    f"(make one with 'testbed codec train --out {p}')")
        return "local"
    if p.is_dir() and (p / "local.safetensors").is_file():
        return "local"
    raise FileNotFoundError(f"model {str(model)!r}: expected 'local', an existing local-model "
                            f".safetensors file (or a directory holding local.safetensors), "
                            f"or a diffusers directory with unet/ and vae/ (sd-turbo)")


def load_generator(model: str = "local", device: str = "cpu", dtype=torch.float32):
    """``local`` (committed checkpoint), a path to a local-model checkpoint
    (``.safetensors`` or a directory with ``local.safetensors``), or a diffusers directory
    with ``unet/`` and ``vae/`` (sd-turbo); see ``model_kind``."""
    if model_kind(model) == "sd-turbo":
        return SdTurboGenerator(Path(model), device, dtype)
    return LocalGenerator(None if model in (None, "local") else Path(model), device, dtype)
