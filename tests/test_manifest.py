"""Catalog/manifest schema: round trip, validation errors naming file and field, atomic edits."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from origin import manifest as mf


def _chunk(i: int, payload: bytes, frames: int = 30, fps: float = 30.0, rep: str = "x",
           psnr: float = 30.0, ssim: float = 0.9) -> mf.Chunk:
    return mf.Chunk(index=i, bytes=len(payload), sha256=hashlib.sha256(payload).hexdigest(),
                    frames=frames, duration_s=frames / fps, psnr_db=psnr, ssim=ssim,
                    path=f"{rep}/{i:06d}.bin")


def _write_video(root: Path, vid: str = "v000", n_frames: int = 75) -> mf.VideoManifest:
    """A small video manifest whose chunk files really exist (3 chunks: 30, 30, 15 frames)."""
    vdir = mf.video_dir(root, vid)
    reps = {}
    for kbps, ssims in ((100, (0.80, 0.70, 0.75)), (400, (0.90, 0.85, 0.88))):
        name = mf.pixel_name("h264", kbps)
        chunks = []
        for i in range(3):
            payload = bytes([i + 1]) * (kbps * (10 + i))
            frames = 30 if i < 2 else 15
            c = _chunk(i, payload, frames, rep=name, psnr=25.0 + kbps / 100, ssim=ssims[i])
            (vdir / c.path).parent.mkdir(parents=True, exist_ok=True)
            (vdir / c.path).write_bytes(payload)
            chunks.append(c)
        reps[name] = mf.Representation(
            name=name, kind="pixel", chunks=tuple(chunks), target_kbps=float(kbps), codec="h264",
            container="annexb", encoder={"preset": "medium"},
            decode_cost={"cpu": mf.DecodeCost(0.01, 0.02, "test box", 3)})
    vm = mf.VideoManifest(video=vid, fps=30.0, width=64, height=64, chunk_s=1.0, n_chunks=3,
                          n_frames=n_frames, duration_s=n_frames / 30.0, representations=reps,
                          source={"kind": "synthetic", "seed": 1})
    mf.write_video_manifest(vdir / mf.MANIFEST_FILE, vm)
    cat = mf.Catalog(chunk_s=1.0, fps=30.0, width=64, height=64,
                     videos=(mf.CatalogVideo(vid, n_frames / 30.0, 3),))
    mf.write_catalog(root, cat)
    return vm


def test_round_trip(tmp_path):
    vm = _write_video(tmp_path)
    cat = mf.load_catalog(tmp_path, check_videos=True)
    assert cat.video_ids == ["v000"]
    assert cat.videos[0].n_chunks == 3
    loaded = cat.load_video("v000")
    assert loaded.to_json() == vm.to_json()
    rep = loaded.representation("pixel/h264/400")
    assert rep.bitrate_kbps == 400.0
    assert rep.chunks[2].frames == 15
    assert rep.decode_cost["cpu"].s_per_chunk_p95 == 0.02
    assert loaded.chunk_frame_range(2) == (60, 15)
    assert [r.name for r in loaded.pixel_ladder("h264")] == ["pixel/h264/100", "pixel/h264/400"]
    # Manifests travel to worker processes.
    import pickle

    assert pickle.loads(pickle.dumps(loaded)) == loaded
    # The same validation applies to bytes fetched over HTTP.
    data = (tmp_path / "videos/v000/manifest.json").read_bytes()
    assert mf.parse_video_manifest(data, source="http://x/m.json").to_json() == vm.to_json()


def _mutate(path: Path, fn) -> None:
    d = json.loads(path.read_text())
    fn(d)
    path.write_text(json.dumps(d))


@pytest.mark.parametrize(
    "mutation, field, words",
    [
        (lambda d: d.pop("fps"), "fps", "missing"),
        (lambda d: d.__setitem__("schema_version", 99), "schema_version", "expected 1"),
        (lambda d: d.__setitem__("n_chunks", 4), "n_chunks", "expected"),
        (lambda d: d["representations"]["pixel/h264/100"]["chunks"][1].__setitem__(
            "sha256", "xyz"), "representations.pixel/h264/100.chunks[1].sha256", "hex"),
        (lambda d: d["representations"]["pixel/h264/100"]["chunks"][0].__setitem__(
            "path", "../../etc/passwd"), "representations.pixel/h264/100.chunks[0].path",
         "relative"),
        (lambda d: d["representations"]["pixel/h264/100"]["chunks"][0].__setitem__(
            "path", "/etc/passwd"), "representations.pixel/h264/100.chunks[0].path", "absolute"),
        (lambda d: d["representations"]["pixel/h264/100"]["chunks"][2].__setitem__(
            "frames", 30), "representations.pixel/h264/100.chunks[2].frames", "15"),
        (lambda d: d["representations"]["pixel/h264/100"].__setitem__("bitrate_kbps", 250),
         "representations.pixel/h264/100.bitrate_kbps", "from the name"),
        (lambda d: d["representations"].__setitem__(
            "pixel/vp9/100", d["representations"]["pixel/h264/100"]),
         "representations.pixel/vp9/100", "pixel/h264"),
        (lambda d: d["representations"]["pixel/h264/400"]["chunks"][0].__setitem__(
            "ssim", "high"), "representations.pixel/h264/400.chunks[0].ssim", "number"),
    ],
)
def test_validation_names_file_and_field(tmp_path, mutation, field, words):
    _write_video(tmp_path)
    path = tmp_path / "videos/v000/manifest.json"
    _mutate(path, mutation)
    with pytest.raises(mf.ManifestError) as ei:
        mf.load_video_manifest(path)
    msg = str(ei.value)
    assert str(path) in msg
    assert f"'{field}'" in msg
    assert words in msg


def test_catalog_errors(tmp_path):
    _write_video(tmp_path)
    path = tmp_path / "catalog.json"
    _mutate(path, lambda d: d["videos"][0].__setitem__("id", "../evil"))
    with pytest.raises(mf.ManifestError, match=r"catalog.json: field 'videos\[0\].id'"):
        mf.load_catalog(tmp_path)
    path.write_text("{not json")
    with pytest.raises(mf.ManifestError, match="catalog.json: not valid JSON"):
        mf.load_catalog(tmp_path)
    with pytest.raises(mf.ManifestError, match="file not found"):
        mf.load_catalog(tmp_path / "nowhere")


def test_catalog_and_manifest_must_agree(tmp_path):
    _write_video(tmp_path)
    _mutate(tmp_path / "catalog.json", lambda d: d.__setitem__("width", 128))
    with pytest.raises(mf.ManifestError, match=r"manifest.json: field 'width': expected 128"):
        mf.load_catalog(tmp_path, check_videos=True)


def test_put_representation_adds_prompt_atomically(tmp_path):
    _write_video(tmp_path)
    path = tmp_path / "videos/v000/manifest.json"
    vdir = path.parent
    name = mf.prompt_name("local", 8)
    chunks = []
    for i, frames in enumerate((30, 30, 15)):
        payload = b"p" * (5000 if i == 0 else 1000)  # chunk 0 carries 4000 init bytes
        c = _chunk(i, payload, frames, rep=name, ssim=0.80)
        (vdir / c.path).parent.mkdir(parents=True, exist_ok=True)
        (vdir / c.path).write_bytes(payload)
        chunks.append(c)
    rep = mf.Representation(name=name, kind="prompt", chunks=tuple(chunks), model="local",
                            rank=8, model_hash="abc", init_bytes=4000, params={"steps": 1})
    vm = mf.put_representation(path, rep)
    assert name in vm.representations
    loaded = mf.load_video_manifest(path).representation(name)
    assert loaded.init_bytes == 4000 and loaded.params["steps"] == 1
    # Measured bitrate: 7000 bytes over 2.5 s.
    assert loaded.bitrate_kbps == pytest.approx(7000 * 8 / 2.5 / 1000)
    # No temp files left behind.
    assert not [p for p in vdir.iterdir() if p.name.endswith(".tmp")]

    # A representation whose files are missing is refused and the manifest is unchanged.
    before = path.read_bytes()
    bad = mf.Representation(name=mf.prompt_name("local", 2), kind="prompt",
                            chunks=tuple(mf.Chunk(c.index, c.bytes, c.sha256, c.frames,
                                                  c.duration_s, c.psnr_db, c.ssim,
                                                  f"missing/{c.index}.bin") for c in chunks),
                            model="local", rank=2)
    with pytest.raises(mf.ManifestError, match="does not exist"):
        mf.put_representation(path, bad)
    assert path.read_bytes() == before

    # init_bytes larger than chunk 0 cannot be written.
    too_big = mf.Representation(name=name, kind="prompt", chunks=tuple(chunks), model="local",
                                rank=8, init_bytes=10**6)
    with pytest.raises(mf.ManifestError, match="init_bytes"):
        mf.put_representation(path, too_big)
    assert path.read_bytes() == before


def test_quality_equivalent_bitrate(tmp_path):
    vm = _write_video(tmp_path)
    # Chunk 0: ssim 0.80 @ 100 kbps, 0.90 @ 400 kbps.
    assert mf.quality_equivalent_kbps(vm, 0, 0.85) == pytest.approx(250.0)
    assert mf.quality_equivalent_kbps(vm, 0, 0.95) == pytest.approx(400.0)  # capped at top
    assert mf.quality_equivalent_kbps(vm, 0, 0.75) == pytest.approx(0.0, abs=1e-9)
    assert mf.quality_equivalent_kbps(vm, 0, 0.78) == pytest.approx(40.0)
    # PSNR works too (25+1 dB at 100, 25+4 dB at 400).
    assert mf.quality_equivalent_kbps(vm, 1, 27.5, metric="psnr_db") == pytest.approx(250.0)
    q = mf.chunk_quality_mbps(vm, "pixel/h264/400")
    assert q == (0.4, 0.4, 0.4)


def test_url_helpers():
    assert mf.chunk_url("v001", "pixel/hevc/250", 7) == "/videos/v001/pixel/hevc/250/7"
    assert mf.is_valid_representation_name("prompt/local/r8")
    assert not mf.is_valid_representation_name("prompt/local/8")
    assert not mf.is_valid_video_id("../x")
