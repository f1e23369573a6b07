"""`testbed prepare`: a real tiny catalog (PyAV, both codecs), checked file by file."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from codec import pixel, quality
from origin import manifest as mf
from origin import source as src
from origin.prepare import PrepareConfig, prepare_catalog
from testbed.cli import main as cli_main

CODECS = tuple(pixel.available_codecs())


def _cfg(out: Path, **kw) -> PrepareConfig:
    base = {"out": out, "count": 2, "duration_s": 2.5, "width": 64, "height": 48,
            "codecs": CODECS, "ladder_kbps": (80, 300), "jobs": 2, "decode_samples": 3}
    base.update(kw)
    return PrepareConfig(**base)


@pytest.fixture(scope="module")
def catalog(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("prep") / "cat"
    report = prepare_catalog(_cfg(out), progress=False)
    assert report.chunks_written == 2 * 3 * 2 * len(CODECS)
    return out


def test_catalog_layout_and_files(catalog):
    cat = mf.load_catalog(catalog, check_videos=True)
    assert cat.video_ids == ["v000", "v001"]
    assert (cat.width, cat.height, cat.fps, cat.chunk_s) == (64, 48, 30.0, 1.0)
    for vid in cat.video_ids:
        vm = cat.load_video(vid)
        assert vm.n_frames == 75 and vm.n_chunks == 3
        assert set(vm.representations) == {f"pixel/{c}/{k}" for c in CODECS for k in (80, 300)}
        for rep in vm.representations.values():
            assert rep.container == "annexb"
            cost = rep.decode_cost["cpu"]
            assert 0 < cost.s_per_chunk_mean <= cost.s_per_chunk_p95 < 5
            assert cost.n_samples == 3
            for c in rep.chunks:
                data = (mf.video_dir(catalog, vid) / c.path).read_bytes()
                assert len(data) == c.bytes
                assert hashlib.sha256(data).hexdigest() == c.sha256
                frames = pixel.decode_pixel_chunk(data, rep.codec)
                assert frames.shape[0] == c.frames == (30 if c.index < 2 else 15)
                assert 15 < c.psnr_db < 60 and 0.3 < c.ssim <= 1


def test_recorded_quality_is_against_the_source(catalog):
    vm = mf.load_video_manifest(mf.video_manifest_path(catalog, "v001"))
    rep = vm.representation("pixel/h264/300")
    c = rep.chunks[1]
    ref = src.read_source_chunk(vm, 1)
    out = pixel.decode_pixel_chunk((mf.video_dir(catalog, "v001") / c.path).read_bytes(), "h264")
    assert c.psnr_db == pytest.approx(quality.psnr_db(ref, out), abs=1e-3)
    assert c.ssim == pytest.approx(quality.ssim(ref, out), abs=1e-5)
    # More bits, better quality, on every chunk of the ladder.
    low = vm.representation("pixel/h264/80")
    assert all(h.psnr_db > lo.psnr_db for h, lo in zip(rep.chunks, low.chunks, strict=True))
    assert rep.total_bytes > low.total_bytes


def test_synthetic_videos_are_deterministic_and_textured():
    spec = src.synthetic_spec(seed=5, index=0, n_frames=30, fps=30.0)
    a = next(src.iter_source_chunks(spec, 64, 64, 30.0, 30, 30))
    b = next(src.iter_source_chunks(src.synthetic_spec(5, 0, 30, 30.0), 64, 64, 30.0, 30, 30))
    c = next(src.iter_source_chunks(src.synthetic_spec(6, 0, 30, 30.0), 64, 64, 30.0, 30, 30))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    # Natural texture, not flat colour: plenty of local detail; and motion between frames.
    grad = np.abs(np.diff(a[0].astype(int), axis=1)).mean()
    assert grad > 2.0
    assert np.abs(a[29].astype(int) - a[0].astype(int)).mean() > 1.0


def test_rerun_is_idempotent_and_keeps_prompt_reps(catalog):
    mpath = mf.video_manifest_path(catalog, "v000")
    # A prompt representation added by the codec step must survive a re-run.
    vdir = mpath.parent
    name = mf.prompt_name("local", 4)
    chunks = []
    for i, frames in enumerate((30, 30, 15)):
        payload = bytes([7]) * 100
        rel = f"{name}/{i:06d}.bin"
        (vdir / rel).parent.mkdir(parents=True, exist_ok=True)
        (vdir / rel).write_bytes(payload)
        chunks.append(mf.Chunk(i, 100, hashlib.sha256(payload).hexdigest(), frames,
                               frames / 30.0, 20.0, 0.5, rel))
    mf.put_representation(mpath, mf.Representation(name=name, kind="prompt",
                                                   chunks=tuple(chunks), model="local", rank=4))
    before = {p: p.stat().st_mtime_ns for p in vdir.rglob("*.h26*")}
    report = prepare_catalog(_cfg(catalog), progress=False)
    assert report.chunks_written == 0 and not report.encoded
    assert len(report.reused) == 2 * 2 * len(CODECS)
    assert {p: p.stat().st_mtime_ns for p in vdir.rglob("*.h26*")} == before
    assert name in mf.load_video_manifest(mpath).representations

    # A damaged chunk file is noticed and only that representation is re-encoded.
    victim = next(vdir.rglob("pixel/h264/80/000001.h264"))
    victim.write_bytes(b"broken")
    report = prepare_catalog(_cfg(catalog), progress=False)
    assert report.encoded == ["v000 pixel/h264/80"]
    vm = mf.load_video_manifest(mpath)
    c = vm.representation("pixel/h264/80").chunks[1]
    assert hashlib.sha256(victim.read_bytes()).hexdigest() == c.sha256


def test_user_videos(tmp_path, capsys):
    import av

    src_dir = tmp_path / "mine"
    src_dir.mkdir()
    # A 1.5-s 25 fps 96x80 file made here, to be scaled/cropped to 64x48 at 30 fps.
    frames = np.concatenate(list(src.iter_source_chunks(
        src.synthetic_spec(9, 0, 38, 25.0), 96, 80, 25.0, 38, 38)))
    with av.open(str(src_dir / "my clip.mp4"), "w") as out:
        s = out.add_stream("libx264", rate=Fraction(25, 1))
        s.width, s.height, s.pix_fmt = 96, 80, "yuv420p"
        for f in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                out.mux(p)
        for p in s.encode(None):
            out.mux(p)
    (src_dir / "notes.txt").write_text("not a video")
    # any container PyAV reads counts, whatever the file is called
    (src_dir / "take2.3gpx").write_bytes((src_dir / "my clip.mp4").read_bytes())
    out = tmp_path / "cat"
    prepare_catalog(_cfg(out, videos_dir=src_dir, duration_s=None, codecs=("h264",),
                         ladder_kbps=(200,), jobs=1), progress=False)
    assert "skipped 1 file(s)" in capsys.readouterr().err
    cat = mf.load_catalog(out, check_videos=True)
    assert cat.video_ids == ["my-clip", "take2"]
    vm = cat.load_video("my-clip")
    assert vm.source["kind"] == "file"
    assert abs(vm.duration_s - 1.52) < 0.1
    rep = vm.representation("pixel/h264/200")
    assert rep.chunks[0].frames == 30 and rep.chunks[0].psnr_db > 25


def test_cli_prepare_and_errors(tmp_path, capsys):
    out = tmp_path / "c"
    rc = cli_main(["prepare", "--out", str(out), "--count", "1", "--duration-s", "1",
                   "--size", "32x32", "--codecs", "h264", "--ladder-kbps", "100", "--quiet"])
    assert rc == 0
    assert "1 videos, 1 representations encoded" in capsys.readouterr().out
    rc = cli_main(["prepare", "--out", str(out), "--count", "1", "--duration-s", "1",
                   "--size", "64x64", "--codecs", "h264", "--quiet"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "existing catalog has 32x32" in err
    assert mf.load_catalog(out, check_videos=True).width == 32  # nothing lost
    rc = cli_main(["prepare", "--out", str(tmp_path / "d"), "--count", "0", "--quiet"])
    assert rc == 2 and "count: expected >= 1" in capsys.readouterr().err
    rc = cli_main(["prepare", "--out", str(tmp_path / "e"), "--codecs", "vp9", "--quiet"])
    assert rc == 2 and "unknown codec 'vp9'" in capsys.readouterr().err
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "broken.mp4").write_bytes(b"this is not a video" * 100)
    rc = cli_main(["prepare", "--out", str(tmp_path / "f"), "--videos", str(bad), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and "broken.mp4" in err and "PyAV cannot read it" in err
    rc = cli_main(["prepare", "--out", str(tmp_path / "g"), "--videos", str(tmp_path / "none"),
                   "--quiet"])
    assert rc == 2 and "is not a directory" in capsys.readouterr().err


@pytest.mark.parametrize("argv, needle", [
    (["--help"], "prepare"), (["--help"], "serve"),
    (["prepare", "--help"], "--prompt-ranks"), (["serve", "--help"], "--access-log"),
])
def test_help_runs(argv, needle):
    r = subprocess.run([sys.executable, "-m", "testbed.cli", *argv],
                       check=False, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and needle in r.stdout


def test_module_entry_point_reports_user_errors_in_one_line(tmp_path):
    """The run starts the origin as ``python -m testbed.cli serve``: a bad catalog there is
    the same one-line error and exit status 2 as with the ``testbed`` script."""
    r = subprocess.run([sys.executable, "-m", "testbed.cli", "serve", "--catalog",
                        str(tmp_path / "nope")], check=False, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and r.stderr.startswith("testbed serve: error:")
