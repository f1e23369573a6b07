"""``testbed codec``: train the local prompt model, encode/decode/inspect prompt chunks."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from testbed.cli import UserError


def register(sub) -> None:
    p = sub.add_parser("codec", help="prompt codec: train the local model, encode, decode, info",
                       description="The prompt codec (docs/codec.md).")
    s = p.add_subparsers(dest="codec_command", metavar="ACTION")
    s.required = True

    t = s.add_parser("train", help="train the local model (deterministic from --seed)",
                     description="Train the 'local' model on images bundled with scikit-image "
                     "(not the catalog's photographs) plus procedural texture, and write "
                     "OUT.safetensors + OUT.json. The committed checkpoint was made with "
                     "the defaults.")
    t.add_argument("--out", type=Path, default=None,
                   help="weights file (default: codec/weights/local.safetensors)")
    # Defaults live in codec.train.train's signature (None here: only flags given are
    # passed on); a test keeps the numbers in this help equal to it.
    t.add_argument("--steps", type=int, default=None, help="Adam steps (default 2500)")
    t.add_argument("--seed", type=int, default=None, help="seed (default 0)")
    t.add_argument("--batch", type=int, default=None, help="images per step (default 8)")
    t.add_argument("--crop", type=int, default=None,
                   help="training crop side, pixels (default 128)")
    t.add_argument("--threads", type=int, default=None, help="torch threads (default 2)")
    t.set_defaults(func=_train)

    e = s.add_parser("encode", help="fit one chunk of a catalog video",
                     description="Fit the prompt of one chunk of a catalog video and write it.")
    e.add_argument("--catalog", type=Path, required=True, help="catalog directory")
    e.add_argument("--video", required=True, help="video id")
    e.add_argument("--chunk", type=int, default=0, help="chunk index (default 0)")
    e.add_argument("--rank", type=int, default=8, help="prompt rank r (default 8)")
    e.add_argument("--key-interval", type=int, default=10, help="frames per keyframe (default 10)")
    e.add_argument("--steps", type=int, default=0, help="refinement steps (default 0)")
    e.add_argument("--model", default="local", help="local | checkpoint | sd-turbo directory")
    e.add_argument("--out", type=Path, required=True, help="chunk file to write")
    e.set_defaults(func=_encode)

    d = s.add_parser("decode", help="decode a chunk file to a PNG strip",
                     description="Decode a prompt chunk and save its frames side by side.")
    d.add_argument("chunk", type=Path, help="prompt chunk file")
    d.add_argument("--model", default="local", help="local | checkpoint | sd-turbo directory")
    d.add_argument("--out", type=Path, required=True, help="PNG to write")
    d.add_argument("--every", type=int, default=5, help="keep every n-th frame (default 5)")
    d.set_defaults(func=_decode)

    i = s.add_parser("info", help="print a chunk's header (or the model's metadata) as JSON",
                     description="Parse a prompt chunk and print its header fields; without "
                     "a chunk, print the local model's metadata.")
    i.add_argument("chunk", type=Path, nargs="?", help="prompt chunk file")
    i.set_defaults(func=_info)


def _train(args) -> int:
    from codec import train, weights

    out = args.out or weights.default_paths()[0]
    given = {"steps": args.steps, "seed": args.seed, "batch": args.batch, "size": args.crop,
             "threads": args.threads}
    meta = train.train(out, **{k: v for k, v in given.items() if v is not None})
    print(f"wrote {out} (sha256 {meta['sha256'][:16]}..., {meta['train_s']:.0f} s); held-out "
          f"encoder-only PSNR {meta['held_out_eval_psnr_db']}")
    return 0


def _read_chunk(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise UserError(f"{path}: {exc.strerror}") from None


def _encode(args) -> int:
    from codec.encode import encode_chunk
    from codec.generators import load_generator
    from origin import manifest as mf
    from origin.source import read_source_chunk

    try:
        vm = mf.load_video_manifest(mf.video_manifest_path(args.catalog, args.video))
        frames = read_source_chunk(vm, args.chunk)
        gen = load_generator(args.model)
        data, info = encode_chunk(gen, frames, args.rank, key_interval=args.key_interval,
                                  steps=args.steps, with_init=args.chunk == 0)
    except (ValueError, IndexError, FileNotFoundError) as exc:
        raise UserError(str(exc)) from None
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(data)
    print(f"{args.out}: {len(data)} bytes (init {info.init_bytes}), PSNR {info.psnr_db:.2f} dB "
          f"(start {info.psnr_start_db:.2f}), SSIM {info.ssim:.4f}, {info.steps} steps, "
          f"{info.seconds:.2f} s")
    return 0


def _decode(args) -> int:
    import numpy as np

    from codec.decode import load_decoder
    from codec.wire import PromptChunkError

    data = _read_chunk(args.chunk)
    try:
        frames, _ = load_decoder(args.model).decode_chunk(data)
    except (PromptChunkError, FileNotFoundError) as exc:
        raise UserError(f"{args.chunk}: {exc}") from None
    import matplotlib.image

    strip = np.concatenate(list(frames[::max(1, args.every)]), axis=1)
    matplotlib.image.imsave(args.out, strip)
    print(f"{args.out}: {len(frames)} frames decoded, every {args.every}th shown")
    return 0


def _info(args) -> int:
    from codec import weights, wire

    if args.chunk is None:
        _w, meta_path = weights.default_paths()
        try:
            print(meta_path.read_text().rstrip())
        except OSError as exc:
            raise UserError(f"{meta_path}: {exc.strerror}") from None
        return 0
    try:
        c = wire.unpack(_read_chunk(args.chunk))
    except wire.PromptChunkError as exc:
        raise UserError(f"{args.chunk}: {exc}") from None
    json.dump({"kind": c.kind, "model_hash": c.model_hash.hex(), "width": c.width,
               "height": c.height, "frames": c.n_frames, "rank": c.rank,
               "keyframes": list(c.positions), "tokens": c.tokens, "token_dim": c.token_dim,
               "latent_shape": list(c.latent_shape), "seed": c.seed,
               "init_latent": c.init_q is not None}, sys.stdout, indent=2)
    print()
    return 0
