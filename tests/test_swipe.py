"""Watch-time distributions: loaders (real and broken files), retention, sampling."""

import numpy as np
import pytest

from traces.paths import trace_dir
from traces.swipe import (
    WatchDist,
    fit_swipe_calibration,
    load_dashlet,
    load_retention,
    load_swipe,
    load_swipe_dir,
    sample_watch_times,
    synthetic_dist,
)
from traces.trace import TraceError

ROOT = trace_dir()
needs_traces = pytest.mark.skipif(ROOT is None, reason="no trace directory (shared/traces)")

# PROVENANCE.md: video length and completion rate per challenge video.
CHALLENGE = {"1_tj": (17, 0.211), "2_EDG": (26, 0.253), "3_gy": (37, 0.289),
             "4_dx": (40, 0.240), "5_ss": (47, 0.061), "6_jt": (6, 0.431), "7_yd": (125, 0.010)}


@needs_traces
def test_challenge_retention_curves():
    dists = load_swipe_dir(ROOT / "short-video-challenge" / "user-retention")
    assert {d.name for d in dists} == set(CHALLENGE)
    for d in dists:
        length, completion = CHALLENGE[d.name]
        assert d.length_s == length
        assert d.completion == pytest.approx(completion, abs=0.001)
        assert d.pmf.sum() == pytest.approx(1.0)
        # Chunk counts in video-sizes match the lengths.
        n_chunks = len((ROOT / "short-video-challenge" / "video-sizes" / d.name /
                        "video_size_0").read_text().split())
        assert n_chunks == length


@needs_traces
def test_retention_matches_file_rows():
    f = ROOT / "short-video-challenge" / "user-retention" / "1_tj"
    rows = np.loadtxt(f)
    d = load_retention(f)
    for t, r in rows[:-1]:  # the end-mark row is not part of the video
        assert d.retention(t) == pytest.approx(r) if t > 0 else d.retention(t) == 1
    assert d.conditional_retention(10, 4) == pytest.approx(rows[10, 1] / rows[4, 1])
    assert d.conditional_retention(3, 5) == 1.0
    assert d.retention(17.5) == 0.0


@needs_traces
def test_dashlet_files():
    dists = load_swipe_dir(ROOT / "dashlet-swipe" / "turk")
    assert len(dists) == 215
    lengths = [d.length_s for d in dists]
    assert min(lengths) == 5 and max(lengths) == 189  # PROVENANCE: 5 to 189 s
    cal = fit_swipe_calibration(dists)
    assert cal["completion"] == pytest.approx(0.401, abs=0.001)
    assert cal["mean_fraction"] == pytest.approx(0.64, abs=0.01)


def test_sampling_is_deterministic_and_position_stable():
    dists = [synthetic_dist(L) for L in (8, 15, 30, 60, 12)]
    a = sample_watch_times(dists, seed=42)
    assert a == sample_watch_times(dists, seed=42)
    assert a != sample_watch_times(dists, seed=43)
    assert sample_watch_times(dists[:3], seed=42) == a[:3]
    assert all(0 <= t <= d.length_s for t, d in zip(a, dists))


def test_sampling_follows_the_distribution():
    d = WatchDist(np.array([0.5, 0.0, 0.2, 0.3]), 3.0)
    times = np.array([t for s in range(4000) for t in sample_watch_times([d], s)])
    assert np.mean(times < 1) == pytest.approx(0.5, abs=0.03)
    assert np.mean((times >= 1) & (times < 2)) == 0
    assert np.mean(times == 3.0) == pytest.approx(0.3, abs=0.03)
    assert times.mean() == pytest.approx(d.mean_watch_s(), abs=0.06)


def test_synthetic_default_calibration():
    for L in (6, 15, 47, 120):
        d = synthetic_dist(L)
        assert d.completion == pytest.approx(0.401, abs=0.001)
        assert d.mean_watch_s() / L == pytest.approx(0.64, abs=0.03)
        assert d.pmf[0] > d.pmf[L - 1]  # early swipes most likely
    with pytest.raises(TraceError):
        synthetic_dist(0.5)


BROKEN = [
    ("r_empty", "", "retention", r"empty file"),
    ("r_t", "0 1\n2 0.5\n", "retention", r"r_t:2: time 2 \(expected 1"),
    ("r_first", "0 0.9\n1 0.5\n", "retention", r"r_first:1: retention 0\.9 at t=0"),
    ("r_up", "0 1\n1 0.5\n2 0.6\n", "retention", r"r_up:3: retention rises"),
    ("r_neg", "0 1\n1 -0.1\n", "retention", r"r_neg:2: retention -0\.1"),
    ("r_word", "0 1\n1 x\n", "retention", r"r_word:2: non-numeric field 'x'"),
    ("r_zero", "0 1\n", "retention", r"r_zero: zero-length video"),
    ("d_sum", "0.5\n0.2\n", "dashlet", r"d_sum: probabilities sum to 0\.7"),
    ("d_neg", "1.2\n-0.2\n", "dashlet", r"d_neg:1: probability 1\.2"),
    ("d_one", "1.0\n", "dashlet", r"d_one: zero-length video"),
    ("d_cols", "0.5 0.5\n0.5\n", "dashlet", r"d_cols:1: 2 fields"),
]


@pytest.mark.parametrize("name,content,fmt,pattern", BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_swipe_files(tmp_path, name, content, fmt, pattern):
    p = tmp_path / name
    p.write_text(content)
    with pytest.raises(TraceError, match=pattern) as info:
        load_swipe(p, fmt)
    assert str(p) in str(info.value) and "expected" in str(info.value)


def test_dashlet_and_retention_agree(tmp_path):
    ret = tmp_path / "v"
    ret.write_text("0\t1\n1\t0.7\n2\t0.5\n3\t0.4\n4 0")
    dsh = tmp_path / "v.txt"
    dsh.write_text("0.3\n0.2\n0.1\n0.4\n")
    a, b = load_retention(ret), load_dashlet(dsh)
    assert a.length_s == b.length_s == 3
    assert np.allclose(a.pmf, b.pmf)
    assert load_swipe(ret).length_s == 3 and load_swipe(dsh).length_s == 3
