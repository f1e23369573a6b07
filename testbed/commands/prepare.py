"""``testbed prepare``: build (or update) a catalog of chunked videos with a pixel ladder."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from testbed.cli import UserError


def _int_list(text: str) -> tuple[int, ...]:
    try:
        vals = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}") from None
    if not vals or any(v <= 0 for v in vals):
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return vals


def _int_at_least(lo: int):
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer >= {lo}, got {text!r}") from None
        if v < lo:
            raise argparse.ArgumentTypeError(f"expected an integer >= {lo}, got {text!r}")
        return v
    return parse


def _psnr_db(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        v = float("nan")
    if not 0 < v <= 100:  # NaN fails too
        raise argparse.ArgumentTypeError(f"expected a PSNR in dB in (0, 100], got {text!r}")
    return v


def _str_list(text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(",") if v.strip())


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, got {text!r}") from None
    return w, h


def register(sub) -> None:
    p = sub.add_parser(
        "prepare",
        help="make a catalog: chunked videos in a pixel bitrate ladder (+ prompt ranks)",
        description="Make a catalog: generated short videos (pans/zooms over bundled "
        "photographs with moving objects) or your own files, cut into independently "
        "decodable chunks, encoded with PyAV into an H.264/H.265 bitrate ladder, with "
        "per-chunk size, sha256, PSNR and SSIM, and a decode-cost profile measured on this "
        "machine. Re-running on an existing catalog only redoes what changed.",
    )
    p.add_argument("--out", required=True, type=Path, help="catalog directory (created)")
    p.add_argument("--videos", type=Path, default=None, metavar="SRC_DIR",
                   help="use the video files in SRC_DIR (any container PyAV reads) instead "
                   "of generated videos; scaled and centre-cropped")
    p.add_argument("--count", type=int, default=8,
                   help="number of videos (generated; or at most this many files) (default 8)")
    p.add_argument("--duration-s", type=float, default=None,
                   help="every video this long (s); default: generated durations drawn in "
                   "[--min-duration-s, --max-duration-s], files keep their length")
    p.add_argument("--min-duration-s", type=float, default=10.0, help="(default 10)")
    p.add_argument("--max-duration-s", type=float, default=40.0,
                   help="also caps the length taken from files (default 40)")
    p.add_argument("--seed", type=int, default=0, help="seed of the generated videos (default 0)")
    p.add_argument("--size", type=_size, default=(256, 256), metavar="WxH",
                   help="frame size in pixels (default 256x256)")
    p.add_argument("--fps", type=float, default=30.0, help="frames per second (default 30)")
    p.add_argument("--chunk-s", type=float, default=1.0, help="chunk length in s (default 1)")
    p.add_argument("--codecs", type=_str_list, default=("h264", "hevc"),
                   help="pixel codecs, comma-separated, from h264,hevc (default h264,hevc)")
    p.add_argument("--ladder-kbps", type=_int_list, default=(100, 250, 500, 1000),
                   help="target bitrates in kbps, comma-separated (default 100,250,500,1000)")
    p.add_argument("--preset", default="medium", help="x264/x265 preset (default medium)")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                   help="parallel worker processes (default: number of CPUs)")
    p.add_argument("--decode-samples", type=int, default=10,
                   help="chunks decoded per representation for the decode-cost profile "
                   "(default 10)")
    p.add_argument("--prompt-ranks", type=_int_list, default=None, metavar="R1,R2,...",
                   help="after the pixel ladder, add prompt representations "
                   "prompt/<model>/r<rank> of these ranks "
                   "(codec.catalog.add_prompt_representations)")
    # Defaults of the prompt flags are codec.catalog's (None here: only flags given are
    # passed on); a test keeps the numbers in this help equal to codec.catalog.DEFAULTS.
    p.add_argument("--prompt-model", default=None, metavar="PATH|local",
                   help="prompt model: 'local' (the committed checkpoint, default), a "
                   "local-model .safetensors file or a directory holding local.safetensors, "
                   "or an sd-turbo diffusers directory (unet/, vae/); the manifest names it "
                   "after the file or directory (players map that name to the path with "
                   "prompt_models)")
    p.add_argument("--prompt-refine-steps", type=_int_at_least(0), default=None, metavar="N",
                   help="gradient refinement steps per chunk after the amortised start "
                   "(default 0: the start only; docs/codec.md gives what steps cost and "
                   "gain)")
    p.add_argument("--prompt-key-interval", type=_int_at_least(1), default=None, metavar="K",
                   help="frames between prompt keyframes (default 10)")
    p.add_argument("--prompt-target-psnr", type=_psnr_db, default=None, metavar="DB",
                   help="stop a chunk's refinement once its fitted frames reach this PSNR "
                   "(default: no early stop; needs --prompt-refine-steps > 0)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


_PROMPT_FLAGS = {"prompt_refine_steps": "refine_steps", "prompt_key_interval": "key_interval",
                 "prompt_target_psnr": "target_psnr_db"}


def _prompt_options(args) -> dict:
    """The prompt flags given, as ``add_prompt_representations`` options; checked now, so
    a bad flag fails before the pixel ladder runs (torch loads only when prompts are asked)."""
    given = [f"--{k.replace('_', '-')}" for k in ("prompt_model", *_PROMPT_FLAGS)
             if getattr(args, k) is not None]
    if not args.prompt_ranks:
        if given:
            raise UserError(f"{', '.join(given)}: only apply with --prompt-ranks")
        return {}
    opts = {o: getattr(args, a) for a, o in _PROMPT_FLAGS.items() if getattr(args, a) is not None}
    from codec.catalog import DEFAULTS, check_options, model_name

    if opts.get("target_psnr_db") is not None and not opts.get("refine_steps"):
        raise UserError("--prompt-target-psnr stops refinement early: it needs "
                        "--prompt-refine-steps N with N > 0")
    try:
        check_options({**DEFAULTS, **opts})
    except ValueError as exc:
        raise UserError(str(exc)) from None
    try:
        model_name(args.prompt_model or "local")
    except (ValueError, FileNotFoundError) as exc:
        raise UserError(f"--prompt-model: {exc}") from None
    return opts


def run(args) -> int:
    from codec.pixel import ChunkEncodeError
    from origin.manifest import ManifestError
    from origin.prepare import PrepareConfig, PrepareError, prepare_catalog
    from origin.source import SourceError

    prompt_opts = _prompt_options(args)
    cfg = PrepareConfig(
        out=args.out, videos_dir=args.videos, count=args.count, duration_s=args.duration_s,
        min_duration_s=args.min_duration_s, max_duration_s=args.max_duration_s,
        seed=args.seed, width=args.size[0], height=args.size[1], fps=args.fps,
        chunk_s=args.chunk_s, codecs=args.codecs, ladder_kbps=args.ladder_kbps,
        preset=args.preset, jobs=args.jobs, decode_samples=args.decode_samples)
    try:
        report = prepare_catalog(cfg, progress=not args.quiet)
    except (PrepareError, ManifestError, SourceError, ChunkEncodeError) as exc:
        raise UserError(str(exc)) from None
    print(f"catalog {args.out}: {report.videos} videos, {len(report.encoded)} representations "
          f"encoded, {len(report.reused)} reused, {report.chunks_written} chunk files written "
          f"in {report.elapsed_s:.1f} s")
    if args.prompt_ranks:
        from codec.catalog import add_prompt_representations

        try:
            summary = add_prompt_representations(
                args.out, ranks=list(args.prompt_ranks), model=args.prompt_model or "local",
                jobs=args.jobs, progress=not args.quiet, **prompt_opts)
        except (ValueError, FileNotFoundError) as exc:  # ManifestError is a ValueError
            raise UserError(str(exc)) from None
        print(f"catalog {args.out}: prompt representations "
              f"{', '.join(sorted(summary['representations']))} added "
              f"({summary['chunks_fitted']} chunks fitted, {summary['chunks_reused']} reused)")
    return 0
