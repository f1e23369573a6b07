"""Prompt codec: wire format, corrupt input, CPU determinism, inversion, sd-turbo loading."""

from __future__ import annotations

import re
import struct
import zlib

import numpy as np
import pytest

from codec import wire  # numpy only: importable without torch
from codec.wire import PromptChunkError

torch = pytest.importorskip("torch")


def _chunk(init=True, n_frames=30, rank=4, tokens=16, dim=64):
    rng = np.random.default_rng(1)
    pos = wire.keyframe_positions(n_frames, 10)
    k = len(pos)
    return wire.PromptChunk(
        kind="local", model_hash=bytes(range(16)), width=64, height=64, n_frames=n_frames,
        rank=rank, positions=pos, latent_shape=(8, 4, 4), seed=7,
        u_q=rng.integers(100, 108, (k, tokens, rank), dtype=np.uint8),  # compressible
        v_q=rng.integers(0, 256, (k, rank, dim), dtype=np.uint8),
        quant=rng.random((k, 4)).astype(np.float32),
        init_q=rng.integers(0, 256, (8, 4, 4), dtype=np.uint8) if init else None,
        init_quant=(0.5, 3.0) if init else (0.0, 0.0))


def _resign(data: bytes) -> bytes:
    """Fix the checksum after an edit, to reach the checks behind it."""
    return data[:-4] + struct.pack("<I", zlib.crc32(data[:-4]))


def test_keyframe_positions():
    assert wire.keyframe_positions(30, 10) == (0, 10, 19, 29)
    assert wire.keyframe_positions(1, 10) == (0,)
    assert wire.keyframe_positions(11, 10) == (0, 10)
    assert wire.keyframe_positions(12, 10) == (0, 6, 11)


@pytest.mark.parametrize("init", [True, False])
@pytest.mark.parametrize("compress", [True, False])
def test_wire_round_trip(init, compress):
    c = _chunk(init)
    data = wire.pack(c, compress=compress)
    d = wire.unpack(data)
    assert d.positions == c.positions and d.rank == c.rank and d.seed == 7
    assert d.model_hash == c.model_hash and d.latent_shape == (8, 4, 4)
    np.testing.assert_array_equal(d.u_q, c.u_q)
    np.testing.assert_array_equal(d.v_q, c.v_q)
    np.testing.assert_array_equal(d.quant, c.quant)
    if init:
        np.testing.assert_array_equal(d.init_q, c.init_q)
        assert d.init_quant == (0.5, 3.0)
    else:
        assert d.init_q is None
    assert wire.pack(d, compress=compress) == data


def test_quantise_dequantise_error_bounded():
    x = np.random.default_rng(0).standard_normal((50, 8)).astype(np.float32)
    q, s, z = wire.quantise(x)
    back = (q.astype(np.float32) - z) * s
    assert np.abs(back - x).max() <= s * 0.5 + 1e-6


def test_every_corrupt_case_raises_prompt_chunk_error():
    good = wire.pack(_chunk(True))
    cases = {
        "empty": b"",
        "not bytes": "text",
        "short": good[:10],
        "truncated": good[:-7],
        "bad magic": _resign(b"XXXX" + good[4:]),
        "bad version": _resign(good[:4] + bytes([9]) + good[5:]),
        "crc": good[:-1] + bytes([good[-1] ^ 1]),
        "flipped payload bit": good[:60] + bytes([good[60] ^ 0x10]) + good[61:],
        "bad kind": _resign(good[:6] + bytes([7]) + good[7:]),
        "unknown flag": _resign(good[:5] + bytes([good[5] | 0x80]) + good[6:]),
        "rank 0": _resign(good[:7] + bytes([0]) + good[8:]),
        "extra bytes": _resign(good[:-4] + b"\0\0\0" + good[-4:]),
    }
    # keyframe positions that do not rise (second position := 0)
    off = wire._FIXED.size
    cases["positions"] = _resign(good[:off + 2] + b"\0\0" + good[off + 4:])
    # more keyframes claimed than present
    cases["keyframe count"] = _resign(good[:30] + struct.pack("<H", 9) + good[32:])
    # payload that is not zlib
    assert good[5] & 1, "test chunk should be zlib-compressed"
    raw = bytearray(good)
    plen_off = off + 2 * 4 + 16 * 4 + 8
    raw[plen_off + 4:plen_off + 8] = b"\xff\xff\xff\xff"
    cases["bad zlib"] = _resign(bytes(raw))
    for name, data in cases.items():
        with pytest.raises(PromptChunkError):
            wire.unpack(data)
        assert issubclass(PromptChunkError, ValueError), name


def _with_payload(chunk, payload: bytes, zlib_flag: bool) -> bytes:
    """``chunk`` packed with ``payload`` in place of its own (length, flag and CRC fixed)."""
    data = wire.pack(chunk, compress=False)
    k = len(chunk.positions)
    plen_off = wire._FIXED.size + 2 * k + 16 * k + (8 if chunk.init_q is not None else 0)
    head = bytearray(data[:plen_off])
    head[5] = (head[5] | 1) if zlib_flag else (head[5] & ~1)
    out = bytes(head) + struct.pack("<I", len(payload)) + payload
    return out + struct.pack("<I", zlib.crc32(out))


def _payload(chunk) -> bytes:
    body = b"".join(chunk.u_q[i].tobytes() + chunk.v_q[i].tobytes()
                    for i in range(len(chunk.positions)))
    return body + (chunk.init_q.tobytes() if chunk.init_q is not None else b"")


def test_with_payload_helper_rebuilds_a_valid_chunk():
    c = _chunk(True)
    assert wire.unpack(_with_payload(c, zlib.compress(_payload(c)), True)).seed == 7
    assert wire.unpack(_with_payload(c, _payload(c), False)).seed == 7


def test_zlib_bomb_stops_at_the_header_bound():
    """64 MB of zeros compress to ~64 KB; decompression stops just past the ~2 KB the
    header's shapes allow instead of inflating it all."""
    c = _chunk(True)
    expected = len(_payload(c))
    bomb = zlib.compress(b"\0" * (64 << 20), 9)
    assert len(bomb) < 100_000
    with pytest.raises(PromptChunkError, match=f"inflates past the {expected} bytes"):
        wire.unpack(_with_payload(c, bomb, True))
    # one byte too many is refused the same way; one too few by the size check
    with pytest.raises(PromptChunkError, match="inflates past"):
        wire.unpack(_with_payload(c, zlib.compress(_payload(c) + b"x"), True))
    with pytest.raises(PromptChunkError, match="payload has"):
        wire.unpack(_with_payload(c, zlib.compress(_payload(c)[:-1]), True))


def test_zlib_stream_truncated_or_followed_by_garbage():
    c = _chunk(True)
    z = zlib.compress(_payload(c))
    with pytest.raises(PromptChunkError, match="truncated"):
        wire.unpack(_with_payload(c, z[:-6], True))
    with pytest.raises(PromptChunkError, match="after its zlib stream"):
        wire.unpack(_with_payload(c, z + b"junk", True))


def test_header_claiming_a_huge_payload_is_refused_before_decompressing():
    c = _chunk(False)
    data = bytearray(wire.pack(c, compress=True))
    # rank 255, tokens and token dim 65535: 4 keyframes x 33 MB claimed
    data[7] = 255
    struct.pack_into("<HH", data, 32, 65535, 65535)
    with pytest.raises(PromptChunkError, match="limit"):
        wire.unpack(_resign(bytes(data)))


def test_header_claiming_too_many_frames_is_refused():
    """A chunk decodes in one batch: a header claiming far more frames than a chunk holds
    would cost the player gigabytes, so it is refused at parse time."""
    data = bytearray(wire.pack(_chunk(False)))
    struct.pack_into("<H", data, 28, wire.MAX_FRAMES + 1)
    with pytest.raises(PromptChunkError, match=f"frames {wire.MAX_FRAMES + 1}"):
        wire.unpack(_resign(bytes(data)))
    with pytest.raises(ValueError, match="a prompt chunk holds"):
        wire.pack(_chunk(False, n_frames=wire.MAX_FRAMES + 1))


@pytest.mark.parametrize("field", [0, 1, 2, 3])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_quantisation_parameters_are_refused(field, value):
    c = _chunk(False)
    quant = c.quant.copy()
    quant[1, field] = value
    data = wire.pack(wire.PromptChunk(**{**c.__dict__, "quant": quant}))
    with pytest.raises(PromptChunkError, match="non-finite quantisation"):
        wire.unpack(data)


@pytest.mark.parametrize("init_quant", [(float("nan"), 1.0), (0.5, float("inf"))])
def test_non_finite_initial_latent_quantisation_is_refused(init_quant):
    c = _chunk(True)
    data = wire.pack(wire.PromptChunk(**{**c.__dict__, "init_quant": init_quant}))
    with pytest.raises(PromptChunkError, match="non-finite quantisation"):
        wire.unpack(data)


def test_quantisation_that_overflows_float32_is_refused():
    c = _chunk(False)
    quant = c.quant.copy()
    quant[0, 0] = 3e38  # finite, but (255 - zero) * scale is not
    with pytest.raises(PromptChunkError, match="overflows float32"):
        wire.unpack(wire.pack(wire.PromptChunk(**{**c.__dict__, "quant": quant})))


def test_payload_shape_mismatch_is_clear():
    c = _chunk(False)
    data = bytearray(wire.pack(c, compress=False))
    # claim rank 3 instead of 4: shapes no longer add up to the payload
    data[7] = 3
    with pytest.raises(PromptChunkError, match="payload has"):
        wire.unpack(_resign(bytes(data)))


# ------------------------------------------------------------------ models on tiny frames


@pytest.fixture(scope="module")
def local_gen():
    from codec import generators, weights

    if not weights.default_paths()[0].is_file():
        pytest.skip("no committed local checkpoint")
    torch.set_num_threads(2)
    return generators.load_generator("local")


def _tiny_frames(n=12, size=32):
    from origin.source import load_photo

    img = load_photo("skimage", "chelsea")
    out = []
    for t in range(n):
        y, x = 60 + t, 120 + 2 * t
        step = 128 // size
        crop = img[y:y + step * size:step, x:x + step * size:step]
        out.append(crop)
    return np.ascontiguousarray(np.stack(out))


def test_encode_decode_deterministic_on_cpu(local_gen):
    from codec.decode import PromptDecoder
    from codec.encode import encode_chunk

    frames = _tiny_frames()
    data, info = encode_chunk(local_gen, frames, rank=2, key_interval=5, steps=0, seed=3,
                              with_init=True)
    assert info.bytes == len(data) and info.init_bytes > 0
    dec = PromptDecoder(local_gen, threads=2)
    a, state = dec.decode_chunk(data)
    b, _ = dec.decode_chunk(data)
    assert a.shape == frames.shape and a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert state["n_frames"] == len(frames)
    # a decoder holding another model refuses the chunk
    other = bytearray(data)
    other[8] ^= 0xFF
    with pytest.raises(PromptChunkError, match="model"):
        dec.decode_chunk(_resign(bytes(other)))


def test_frame_size_the_model_cannot_make_is_a_clear_error(local_gen):
    from codec.decode import PromptDecoder
    from codec.encode import encode_chunk

    frames = _tiny_frames(n=2)
    data, _info = encode_chunk(local_gen, frames, rank=2, steps=0, seed=3)
    dec = PromptDecoder(local_gen, threads=1)
    assert dec.decode_chunk(data)[0].shape == (2, 32, 32, 3)
    for width, match in ((40, "frame size 40x32: the local model needs multiples of 16"),
                         (48, "do not fit the model at 48x32")):
        bad = bytearray(data)
        struct.pack_into("<H", bad, 24, width)  # the header's width
        with pytest.raises(PromptChunkError, match=match):
            dec.decode_chunk(_resign(bytes(bad)))
    with pytest.raises(ValueError, match="frame size 40x40: the local model needs multiples"):
        encode_chunk(local_gen, np.zeros((2, 40, 40, 3), np.uint8), rank=2)


def test_refinement_improves_psnr_within_a_few_steps(local_gen):
    from codec.encode import encode_chunk

    frames = _tiny_frames(n=6)
    _data, info = encode_chunk(local_gen, frames, rank=2, key_interval=5, steps=6, lr=0.02,
                               seed=1)
    assert info.steps == 6
    assert info.psnr_db > info.psnr_start_db + 0.1, info


def test_trained_model_beats_random_init_on_held_out_frame(local_gen, tmp_path):
    """The committed model is trained: far better than a random-init model of the same shape
    on a photograph it never saw."""
    from codec import weights
    from codec.encode import encode_chunk
    from codec.generators import LocalGenerator
    from codec.model import LocalModel

    torch.manual_seed(0)
    weights.save(LocalModel(local_gen.model.config), tmp_path / "local.safetensors", {})
    random_gen = LocalGenerator(tmp_path / "local.safetensors")
    frames = _tiny_frames(n=1, size=64)
    _d, trained = encode_chunk(local_gen, frames, rank=4, steps=0)
    _d, rnd = encode_chunk(random_gen, frames, rank=4, steps=0)
    assert trained.psnr_db > 18.0 and trained.psnr_db > rnd.psnr_db + 5, (trained, rnd)


# ------------------------------------------------------------------ sd-turbo loading path


def _tiny_sd_dir(root):
    from diffusers import AutoencoderTiny, EulerAncestralDiscreteScheduler, UNet2DConditionModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=(8, 16),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), layers_per_block=1,
        cross_attention_dim=16, attention_head_dim=4, norm_num_groups=4)
    vae = AutoencoderTiny(encoder_block_out_channels=(8, 8, 8, 8),
                          decoder_block_out_channels=(8, 8, 8, 8), latent_channels=4,
                          num_encoder_blocks=(1, 1, 1, 1), num_decoder_blocks=(1, 1, 1, 1))
    sched = EulerAncestralDiscreteScheduler(timestep_spacing="trailing")
    unet.save_pretrained(root / "unet")
    vae.save_pretrained(root / "vae")
    sched.save_pretrained(root / "scheduler")
    return root


def test_sd_turbo_loading_path_encodes_and_decodes(tmp_path):
    from codec.decode import load_decoder
    from codec.encode import encode_chunk
    from codec.generators import SdTurboGenerator, load_generator

    root = _tiny_sd_dir(tmp_path / "sd")
    gen = load_generator(str(root))
    assert isinstance(gen, SdTurboGenerator)
    assert gen.tokens(32, 32) == 77 and gen.latent_shape(32, 32) == (4, 4, 4)
    assert int(gen.timestep) == 999
    frames = _tiny_frames(n=3)
    data, info = encode_chunk(gen, frames, rank=2, key_interval=2, steps=3, lr=0.1, seed=5,
                              with_init=True)
    assert info.steps == 3 and np.isfinite(info.psnr_db)
    dec = load_decoder(str(root), device="cpu", threads=1)
    a, _ = dec.decode_chunk(data)
    b, _ = dec.decode_chunk(data)
    assert a.shape == (3, 32, 32, 3) and np.array_equal(a, b)
    # a local-model chunk is refused by the sd-turbo decoder
    c = _chunk(False)
    with pytest.raises(PromptChunkError):
        dec.decode_chunk(wire.pack(c))


# ------------------------------------------------------------------ profiles, training data


def test_device_profiles():
    from codec import profiles
    from origin import manifest as mf

    def rep(kind, name, cost=None):
        ch = tuple(mf.Chunk(i, 100, "0" * 64, 30, 1.0, 20.0, 0.5, f"{i}") for i in range(3))
        dc = {"cpu": mf.DecodeCost(0.02, 0.03, "here")} if cost else {}
        return mf.Representation(name=name, kind=kind, chunks=ch, decode_cost=dc)

    prompt = rep("prompt", "prompt/local/r8")
    pixel = rep("pixel", "pixel/h264/250", cost=True)
    cpu = profiles.decode_s("cpu-local", prompt, "cpu")
    assert cpu == pytest.approx(0.03 + 30 * 0.0105)
    assert profiles.decode_s("cpu-local", prompt, "npu") is None
    npu = profiles.decode_s("npu", prompt, "npu")
    assert 0 < npu < cpu < profiles.decode_s("npu", prompt, "cpu")
    assert profiles.decode_s("phone-gpu", prompt, "gpu") < cpu
    assert profiles.decode_s("cpu-local", pixel, "cpu") == pytest.approx(0.02)
    assert profiles.decode_s("phone-gpu", pixel, "cpu") == pytest.approx(0.04)
    assert profiles.decode_s("phone-gpu", pixel, "gpu") is None
    with pytest.raises(ValueError, match="known: cpu-local"):
        profiles.decode_s("tpu", prompt, "cpu")


def test_training_images_exclude_the_catalog_photographs():
    from codec import train
    from origin.source import PHOTOS

    assert not set(train.TRAIN_IMAGES) & {name for _pkg, name in PHOTOS}
    assert {name for _pkg, name in train.EVAL_PHOTOS} <= {name for _pkg, name in PHOTOS}
    rng = np.random.default_rng(0)
    a = train.sample_batch(train.training_images(), 3, 64, rng)
    b = train.sample_batch(train.training_images(), 3, 64, np.random.default_rng(0))
    assert a.shape == (3, 3, 64, 64) and np.array_equal(a, b)
    assert -1e-5 <= a.min() and a.max() <= 1.0 + 1e-5  # resampling overshoot only


# ------------------------------------------------------------------ options and their defaults


def _helps(command) -> dict:
    """--flag -> help text of a ``testbed`` subcommand (``("codec", "train")``)."""
    import argparse

    from testbed.cli import build_parser

    parser = build_parser()
    for name in command:
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = sub.choices[name]
    return {a.option_strings[-1]: a.help for a in parser._actions if a.option_strings}


def test_train_cli_defaults_are_the_train_function_defaults():
    """One source: ``testbed codec train`` passes on only flags given; its help states the
    signature's defaults, which are the committed checkpoint's settings."""
    import inspect
    import json

    from codec import train, weights

    sig = inspect.signature(train.train).parameters
    helps = _helps(("codec", "train"))
    for flag, param in (("steps", "steps"), ("seed", "seed"), ("batch", "batch"),
                        ("crop", "size"), ("threads", "threads")):
        assert f"(default {sig[param].default})" in helps[f"--{flag}"], flag
    meta = json.loads(weights.default_paths()[1].read_text())
    assert (meta["steps"], meta["seed"], meta["batch"], meta["crop"], meta["lr"]) == (
        sig["steps"].default, sig["seed"].default, sig["batch"].default, sig["size"].default,
        sig["lr"].default)


def test_prepare_prompt_flag_help_states_the_catalog_defaults():
    from codec.catalog import DEFAULTS

    helps = _helps(("prepare",))
    assert f"(default {DEFAULTS['refine_steps']}:" in helps["--prompt-refine-steps"]
    assert f"(default {DEFAULTS['key_interval']})" in helps["--prompt-key-interval"]
    assert DEFAULTS["target_psnr_db"] is None
    assert "(default: no early stop" in helps["--prompt-target-psnr"]


@pytest.mark.parametrize("extra, needle", [
    (["--prompt-refine-steps", "3"], "--prompt-refine-steps: only apply with --prompt-ranks"),
    (["--prompt-ranks", "2", "--prompt-target-psnr", "30"],
     "--prompt-target-psnr stops refinement early: it needs --prompt-refine-steps"),
    (["--prompt-ranks", "2", "--prompt-model", "/nonexistent/m.safetensors"],
     "--prompt-model: model '/nonexistent/m.safetensors': no such local-model weights file"),
    (["--prompt-ranks", "2", "--prompt-model", "sd-turbo"],
     "--prompt-model: model 'sd-turbo': expected 'local', an existing local-model"),
])
def test_prepare_prompt_flags_fail_before_any_work(tmp_path, capsys, extra, needle):
    from testbed.cli import main as cli_main

    out = tmp_path / "cat"
    rc = cli_main(["prepare", "--out", str(out), "--count", "1", "--duration-s", "1",
                   "--quiet", *extra])
    assert rc == 2
    assert needle in capsys.readouterr().err
    assert not out.exists()  # refused before the pixel ladder


@pytest.mark.parametrize("flag, value", [("--prompt-key-interval", "0"),
                                         ("--prompt-refine-steps", "-1"),
                                         ("--prompt-target-psnr", "nan"),
                                         ("--prompt-target-psnr", "0")])
def test_prepare_prompt_flag_values_are_checked(capsys, flag, value):
    from testbed.cli import main as cli_main

    with pytest.raises(SystemExit) as exc:
        cli_main(["prepare", "--out", "/tmp/unused", "--prompt-ranks", "2", flag, value])
    assert exc.value.code == 2
    assert f"argument {flag}: expected" in capsys.readouterr().err


def test_catalog_options_are_checked():
    from codec.catalog import DEFAULTS, check_options

    check_options(dict(DEFAULTS))
    for change, needle in (({"key_interval": 0}, "key_interval: expected an integer >= 1"),
                           ({"lr": float("nan")}, "lr: expected a finite number > 0"),
                           ({"ssim_weight": -1}, "ssim_weight: expected a finite number >= 0"),
                           ({"lr_min": 1.0}, "lr_min: expected None or a number in (0, lr"),
                           ({"target_psnr_db": 30}, "needs refine_steps > 0")):
        with pytest.raises(ValueError, match=re.escape(needle)):
            check_options({**DEFAULTS, **change})


def test_model_names(tmp_path):
    import shutil

    from codec import weights
    from codec.catalog import model_name

    committed = weights.default_paths()[0]
    assert model_name("local") == "local" == model_name(str(committed))
    assert model_name(str(committed.parent)) == "local"
    (tmp_path / "my_ckpt").mkdir()
    shutil.copy(committed, tmp_path / "my_ckpt" / "local.safetensors")
    assert model_name(str(tmp_path / "my_ckpt")) == "my-ckpt"
    assert model_name(str(tmp_path / "my_ckpt" / "local.safetensors")) == "my-ckpt"
    shutil.copy(committed, tmp_path / "v2.safetensors")
    assert model_name(str(tmp_path / "v2.safetensors")) == "v2"
    (tmp_path / "local").mkdir()
    shutil.copy(committed, tmp_path / "local" / "local.safetensors")
    with pytest.raises(ValueError, match="would be named 'local'"):
        model_name(str(tmp_path / "local"))
    with pytest.raises(FileNotFoundError, match="no such local-model weights file"):
        model_name(str(tmp_path / "none.safetensors"))


def test_encode_options_are_checked(local_gen):
    from codec.encode import encode_chunk

    frames = _tiny_frames(n=1)
    for kw, needle in (({"context_l1_weight": -0.1}, "context_l1_weight: expected a finite"),
                       ({"mse_weight": float("inf")}, "mse_weight: expected a finite"),
                       ({"lr": 0.0}, "lr: expected a finite number > 0"),
                       ({"lr_min": 0.5}, "lr_min: expected a number in (0, lr")):
        with pytest.raises(ValueError, match=re.escape(needle)):
            encode_chunk(local_gen, frames, rank=2, steps=1, **kw)


def test_context_l1_term_shrinks_the_prompt(local_gen):
    """The mean|c| regulariser (Promptus' 0.1 mean|c|) pulls the fitted context towards 0."""
    from codec.encode import encode_chunk

    frames = _tiny_frames(n=2)

    def mean_abs_c(data):
        c = wire.unpack(data)
        return float(np.abs(np.einsum("klr,krd->kld", c.u(), c.v())).mean() / np.sqrt(c.rank))

    plain, _ = encode_chunk(local_gen, frames, rank=2, steps=5, lr=0.05, seed=2)
    shrunk, info = encode_chunk(local_gen, frames, rank=2, steps=5, lr=0.05, seed=2,
                                context_l1_weight=1.0)
    assert info.steps == 5
    assert mean_abs_c(shrunk) < 0.95 * mean_abs_c(plain), (mean_abs_c(shrunk),
                                                           mean_abs_c(plain))
