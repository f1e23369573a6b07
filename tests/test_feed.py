"""players.feed: feed order, watch times and VideoSpecs from a real (tiny) prepared catalog."""

from pathlib import Path

import numpy as np
import pytest

from origin import manifest as mf
from origin.prepare import PrepareConfig, prepare_catalog
from players import feed as pfeed
from traces.paths import trace_dir
from traces.swipe import WatchDist, synthetic_dist


@pytest.fixture(scope="module")
def catalog(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cat")
    prepare_catalog(PrepareConfig(out=out, count=3, duration_s=3.0, codecs=("h264",),
                                  ladder_kbps=(100, 300), width=64, height=64, jobs=1,
                                  decode_samples=2), progress=False)
    return out


def test_feed_order_cycles_catalog_deterministically():
    ids = ["a", "b", "c"]
    f1 = pfeed.feed_order(ids, 10, seed=7)
    assert f1 == pfeed.feed_order(ids, 10, seed=7)
    assert len(f1) == 10
    for c in range(3):  # every cycle is a permutation of the catalog
        assert sorted(f1[3 * c:3 * c + 3]) == ids
    # a longer feed keeps the earlier positions
    assert pfeed.feed_order(ids, 20, seed=7)[:10] == f1
    assert any(pfeed.feed_order(ids, 10, seed=s) != f1 for s in range(8, 20))
    with pytest.raises(pfeed.FeedError, match="length"):
        pfeed.feed_order(ids, 0, seed=1)


def test_plan_feed_same_seed_same_watch_times(catalog):
    a = pfeed.plan_feed(catalog, length=7, seed=3)
    b = pfeed.plan_feed(catalog, length=7, seed=3)
    c = pfeed.plan_feed(catalog, length=7, seed=4)
    assert a == b
    assert a.watch_s != c.watch_s
    assert len(a.video_ids) == len(a.watch_s) == len(a.watch_pmf) == 7
    for w, pmf in zip(a.watch_s, a.watch_pmf):
        assert 0 < w <= 3.0
        assert abs(sum(pmf) - 1) < 1e-9
        assert len(pmf) == 4  # 3 one-second bins + watched to the end
    cfg = a.to_config()
    assert cfg["videos"] == list(a.video_ids) and cfg["swipe"] == "synthetic"


def test_plan_feed_rejects_unknown_swipe_model(catalog):
    with pytest.raises(pfeed.FeedError, match="dashlet"):
        pfeed.plan_feed(catalog, length=3, seed=1, swipe="tiktok")


def test_stretch_keeps_completion_and_fraction_shape():
    d = synthetic_dist(20.0)
    s = pfeed.stretch_dist(d, 5.0)
    assert s.length_s == 5.0 and s.n_bins == 5
    assert s.completion == pytest.approx(d.completion)
    # retention at the same fraction of the video agrees at whole-second points
    for i in range(5):
        assert s.retention(i) == pytest.approx(d.retention(i * 4.0), abs=1e-9)


@pytest.mark.skipif(trace_dir() is None, reason="no shared trace directory")
@pytest.mark.parametrize("swipe", ["challenge", "dashlet"])
def test_real_swipe_data_assigned_by_catalog_index(catalog, swipe):
    cat = mf.load_catalog(catalog)
    d1 = pfeed.watch_dists(cat, swipe)
    d2 = pfeed.watch_dists(cat, swipe)
    assert list(d1) == cat.video_ids
    for vid in cat.video_ids:
        assert isinstance(d1[vid], WatchDist)
        assert np.array_equal(d1[vid].pmf, d2[vid].pmf)
        assert d1[vid].length_s == 3.0
        assert swipe[:4] in d1[vid].source.lower() or "turk" in d1[vid].source
    # different videos get different real curves
    assert not np.array_equal(d1[cat.video_ids[0]].pmf, d1[cat.video_ids[1]].pmf)
    plan = pfeed.plan_feed(catalog, length=6, seed=5, swipe=swipe)
    assert plan == pfeed.plan_feed(catalog, length=6, seed=5, swipe=swipe)


def test_video_spec_from_manifest(catalog):
    plan, specs = pfeed.load_feed(catalog, length=4, seed=1)
    assert [s.video_id for s in specs] == list(plan.video_ids)
    vm = mf.load_catalog(catalog).load_video(specs[0].video_id)
    s = specs[0]
    assert s.n_chunks == 3 and s.chunk_s == 1.0 and s.duration_s == pytest.approx(3.0)
    assert [r.name for r in s.representations] == ["pixel/h264/100", "pixel/h264/300"]
    r = s.rep("pixel/h264/300")
    assert r.chunk_bytes == tuple(c.bytes for c in vm.representation(r.name).chunks)
    assert r.chunk_quality_mbps == (0.3, 0.3, 0.3)
    # pixel chunks decode on the cpu, with the measured cost of the manifest
    assert set(r.decode_s) == {"cpu"}
    assert r.decode_s["cpu"] == vm.representation(r.name).decode_cost["cpu"].s_per_chunk_mean
    assert s.watch_pmf == plan.watch_pmf[0]


def test_prompt_quality_is_h264_equivalent(catalog):
    """A made-up prompt representation whose SSIM sits between the two rungs gets a quality
    between their bitrates (interpolated on that chunk's ladder)."""
    cat = mf.load_catalog(catalog)
    vm = cat.load_video(cat.video_ids[0])
    lo, hi = vm.representation("pixel/h264/100"), vm.representation("pixel/h264/300")
    chunks = tuple(
        mf.Chunk(c.index, 50, "0" * 64, c.frames, c.duration_s, c.psnr_db,
                 (c.ssim + hi.chunks[c.index].ssim) / 2, f"prompt/{c.index}.bin")
        for c in lo.chunks)
    prompt = mf.Representation(name="prompt/local/r4", kind="prompt", chunks=chunks,
                               model="local", rank=4,
                               decode_cost={"cpu": mf.DecodeCost(0.2, 0.3, "test", 1)})
    reps = dict(vm.representations)
    reps[prompt.name] = prompt
    vm2 = mf.VideoManifest(vm.video, vm.fps, vm.width, vm.height, vm.chunk_s, vm.n_chunks,
                           vm.n_frames, vm.duration_s, reps)
    spec = pfeed.video_spec(vm2, (1.0,), devices=("cpu", "npu"))
    assert spec.representations[-1].name == "prompt/local/r4"
    r = spec.rep("prompt/local/r4")
    for c, q in enumerate(r.chunk_quality_mbps):
        q_lo, q_hi = lo.chunks[c].ssim, hi.chunks[c].ssim
        if q_hi > q_lo:
            assert 0.1 < q < 0.3
    assert dict(r.decode_s) == {"cpu": 0.2}  # no npu cost measured: not decodable there
    with pytest.raises(pfeed.FeedError, match="no representation"):
        pfeed.video_spec(vm2, (1.0,), representations=["pixel/h264/999"])
