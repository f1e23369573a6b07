"""The ``local`` generative model: amortised encoder, one-step conditional UNet, tiny decoder.

Same structure as Promptus (conditioning -> one-step generator -> tiny decoder), sized to
decode 256x256 in real time on two CPU cores:

- the *prompt* is a context of ``L = (H/16) * (W/16)`` tokens of ``D = 64`` dims, one token
  per 16x16 image patch (the cross-attention context), sent low-rank as ``c = U @ V / sqrt(r)``;
- the generator is a diffusers ``UNet2DConditionModel`` run once (t = 999) on the token grid:
  its input is the context laid out as a map concatenated with the starting latent
  (``0.05 * previous latent + 0.95 * seeded noise``), and it cross-attends to the tokens;
  its output, added to a 1x1 projection of the context map, is the frame's latent
  (16 channels on the 16x16 grid);
- the decoder is TAESD-style (diffusers ``AutoencoderTinyBlock``s, nearest upsampling, no
  full-resolution convolution: a final PixelShuffle(2)) plus a linear patch-synthesis path;
- the encoder (same blocks, strided) predicts the context from a frame: the starting point
  that inversion then refines with a few gradient steps (amortised inversion).

The module never touches files; ``codec.weights`` loads and saves checkpoints.
"""

from __future__ import annotations

import math

import torch
from diffusers import UNet2DConditionModel
from diffusers.models.unets.unet_2d_blocks import AutoencoderTinyBlock
from torch import nn

PATCH = 16          # image pixels per token side
TIMESTEP = 999      # the one denoising step, as SD-Turbo

DEFAULT_CONFIG = {
    "token_dim": 64,
    "latent_channels": 16,
    "unet_channels": [32, 64],
    "decoder_channels": [64, 48, 32, 16],
    "encoder_channels": [32, 32, 64, 64],
    "attention_head_dim": 16,
}


class Encoder(nn.Module):
    """Frame (B,3,H,W) in [0,1] -> context map (B,D,H/16,W/16)."""

    def __init__(self, token_dim: int, channels: list[int]):
        super().__init__()
        c0, c1, c2, c3 = channels
        self.net = nn.Sequential(
            nn.PixelUnshuffle(2),                                   # /2, 12 channels
            nn.Conv2d(12, c0, 3, padding=1), nn.ReLU(),
            nn.Conv2d(c0, c1, 3, stride=2, padding=1), nn.ReLU(),   # /4
            AutoencoderTinyBlock(c1, c1, "relu"),
            nn.Conv2d(c1, c2, 3, stride=2, padding=1), nn.ReLU(),   # /8
            AutoencoderTinyBlock(c2, c2, "relu"),
            nn.Conv2d(c2, c3, 3, stride=2, padding=1), nn.ReLU(),   # /16
            AutoencoderTinyBlock(c3, c3, "relu"),
            nn.Conv2d(c3, token_dim, 3, padding=1),
        )
        # Linear patch embedding beside the conv stack: a direct path that makes the
        # model start as a PCA-like patch code and train in minutes.
        self.patch = nn.Sequential(nn.PixelUnshuffle(PATCH),
                                   nn.Conv2d(3 * PATCH * PATCH, token_dim, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x * 2 - 1
        return self.net(x) + self.patch(x)


class Decoder(nn.Module):
    """Latent (B,C,H/16,W/16) -> frame (B,3,H,W), roughly in [0,1] (clamp when converting)."""

    def __init__(self, latent_channels: int, channels: list[int]):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(latent_channels, channels[0], 3, padding=1),
                                   nn.ReLU()]
        for i, ch in enumerate(channels):
            layers.append(AutoencoderTinyBlock(ch, ch, "relu"))
            if i + 1 < len(channels):
                layers += [nn.Upsample(scale_factor=2, mode="nearest"),
                           nn.Conv2d(ch, channels[i + 1], 3, padding=1, bias=False)]
        layers += [nn.Conv2d(channels[-1], 12, 3, padding=1), nn.PixelShuffle(2)]
        self.net = nn.Sequential(*layers)
        # Linear patch synthesis beside the conv stack (the encoder's patch embedding's twin).
        self.patch = nn.Sequential(nn.Conv2d(latent_channels, 3 * PATCH * PATCH, 1),
                                   nn.PixelShuffle(PATCH))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return (self.net(z) + self.patch(z)) * 0.5 + 0.5


class LocalModel(nn.Module):
    """The three parts of the ``local`` codec model; ``config`` is saved beside the weights."""

    def __init__(self, config: dict | None = None):
        super().__init__()
        cfg = dict(DEFAULT_CONFIG)
        cfg.update(config or {})
        self.config = cfg
        d = int(cfg["token_dim"])
        c = int(cfg["latent_channels"])
        if len(cfg["decoder_channels"]) != 4:
            raise ValueError("decoder_channels: expected 4 stages (16x upsampling)")
        self.token_dim = d
        self.latent_channels = c
        self.encoder = Encoder(d, list(cfg["encoder_channels"]))
        u0, u1 = cfg["unet_channels"]
        self.unet = UNet2DConditionModel(
            sample_size=16, in_channels=d + c, out_channels=c,
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
            block_out_channels=(u0, u1), layers_per_block=1, norm_num_groups=8,
            cross_attention_dim=d, attention_head_dim=int(cfg["attention_head_dim"]),
        )
        # A direct path from the context map to the latent: the UNet learns a residual on
        # top of it, which trains in minutes where the plain chain barely moved.
        self.ctx_proj = nn.Conv2d(d, c, 1)
        nn.init.zeros_(self.unet.conv_out.weight)  # the UNet starts as a no-op residual
        nn.init.zeros_(self.unet.conv_out.bias)
        self.decoder = Decoder(c, list(cfg["decoder_channels"]))

    # -- shapes ------------------------------------------------------------------------
    @staticmethod
    def grid(height: int, width: int) -> tuple[int, int]:
        """Token grid (rows, cols) of a frame size; sizes must be multiples of 16."""
        if height % PATCH or width % PATCH or height <= 0 or width <= 0:
            raise ValueError(f"frame size {width}x{height}: the local model needs multiples "
                             f"of {PATCH}")
        return height // PATCH, width // PATCH

    # -- parts -------------------------------------------------------------------------
    def encode_context(self, frames: torch.Tensor) -> torch.Tensor:
        """frames (B,3,H,W) in [0,1] -> context tokens (B,L,D), row-major over the grid."""
        m = self.encoder(frames)
        return m.flatten(2).transpose(1, 2)

    def generate(self, ctx: torch.Tensor, z_start: torch.Tensor) -> torch.Tensor:
        """One generator step: context (B,L,D) + starting latent (B,C,h,w) -> latent (B,C,h,w)."""
        b, _, h, w = z_start.shape
        cmap = ctx.transpose(1, 2).reshape(b, self.token_dim, h, w)
        x = torch.cat([cmap, z_start], dim=1)
        t = torch.full((b,), TIMESTEP, dtype=torch.long, device=x.device)
        return self.ctx_proj(cmap) + self.unet(x, t, encoder_hidden_states=ctx,
                                               return_dict=False)[0]

    def decode_latent(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def forward(self, frames: torch.Tensor, z_start: torch.Tensor) -> torch.Tensor:
        return self.decode_latent(self.generate(self.encode_context(frames), z_start))


def low_rank_project(ctx: torch.Tensor, rank: int) -> torch.Tensor:
    """Best rank-``rank`` approximation of each (L,D) context, as a linear map of ``ctx``
    (projection computed without gradient), so training sees what a rank-r prompt can carry."""
    if rank >= min(ctx.shape[-2:]):
        return ctx
    with torch.no_grad():
        u, _s, _vh = torch.linalg.svd(ctx.float(), full_matrices=False)
        p = u[..., :rank]
    return p @ (p.transpose(-1, -2) @ ctx)


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def scale_for_rank(rank: int) -> float:
    return 1.0 / math.sqrt(rank)
