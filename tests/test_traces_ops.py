"""Trace operations, writers (round trips), trace directory, selection and hashes."""

import numpy as np
import pytest

from traces import ops
from traces.formats import load, load_mahimahi_ms
from traces.paths import ENV_VAR, file_hash, list_traces, open_trace, select, trace_dir, trace_hash
from traces.trace import Trace, TraceError

ROOT = trace_dir()
needs_traces = pytest.mark.skipif(ROOT is None, reason="no trace directory (shared/traces)")


def step_trace():
    # 2 Mbps for 5 s, 8 Mbps for 5 s, 1 Mbps for 5 s.
    return Trace(np.array([0.0, 5.0, 10.0]), np.array([2.0, 8.0, 1.0]), 5.0, name="step")


def test_window_and_loop_preserve_bits():
    t = step_trace()
    w = ops.window(t, 3.0, 4.0)
    assert w.duration_s == pytest.approx(4.0)
    assert w.bits_between(0, 4) == pytest.approx(t.bits_between(3, 7))
    assert w.rate_at(0.5) == 2.0 and w.rate_at(2.5) == 8.0
    lp = ops.loop(t, 37.0)
    assert lp.duration_s == pytest.approx(37.0)
    assert lp.bits_between(0, 37) == pytest.approx(t.bits_between(0, 37))
    across = ops.window(t, 13.0, 4.0)  # wraps past the end
    assert across.rate_at(1.0) == 1.0 and across.rate_at(2.5) == 2.0
    with pytest.raises(TraceError, match="duration must be > 0"):
        ops.window(t, 0, 0)


def test_offset_rotates():
    t = step_trace()
    o = ops.offset(t, 12.0)
    assert o.duration_s == pytest.approx(15.0)
    assert o.rate_at(0) == 1.0 and o.rate_at(3.5) == 2.0
    assert o.mean_mbps() == pytest.approx(t.mean_mbps())
    assert "offset(12)" in o.meta["ops"]
    assert ops.offset(t, 27.0).rate_at(0) == o.rate_at(0)


def test_scale_clip_resample():
    t = step_trace()
    assert ops.scale(t, 0.5).mean_mbps() == pytest.approx(t.mean_mbps() / 2)
    c = ops.clip(t, 1.5, 4.0)
    assert list(c.rates_mbps) == [2.0, 4.0, 1.5]
    with pytest.raises(TraceError):
        ops.clip(t, 3, 2)
    with pytest.raises(TraceError):
        ops.scale(t, -1)
    r = ops.resample(t, 4.0)  # bins 0-4, 4-8, 8-12, 12-15 (short last bin)
    assert r.last_step_s == pytest.approx(3.0)
    assert list(np.round(r.rates_mbps, 6)) == [2.0, 6.5, 4.5, 1.0]
    assert r.bits_between(0, 15) == pytest.approx(t.bits_between(0, 15))


def test_cooked_round_trip_both_conventions(tmp_path):
    t = ops.resample(step_trace(), 1.0)
    for conv in ("start", "end"):
        p = ops.write_cooked(t, tmp_path / f"c_{conv}", conv)
        back = load(p, "cooked", convention=conv)
        assert np.allclose(back.times_s, t.times_s)
        assert np.allclose(back.rates_mbps, t.rates_mbps)
        assert back.duration_s == pytest.approx(t.duration_s)


def test_mahimahi_writer_delivers_the_trace(tmp_path):
    t = step_trace()
    p = ops.write_mahimahi(t, tmp_path / "step.down")
    ms = load_mahimahi_ms(p)
    assert ms[-1] == 15000
    per_phase = [np.sum((ms >= a) & (ms < a + 5000)) * 12000 / 5 / 1e6 for a in (0, 5000, 10000)]
    assert per_phase == pytest.approx([2.0, 8.0, 1.0], rel=0.01)
    back = load(p)
    assert back.mean_mbps() == pytest.approx(t.mean_mbps(), rel=0.01)


def test_mahimahi_writer_refuses_empty_link(tmp_path):
    z = Trace(np.array([0.0]), np.array([0.0]), 1.0, name="dead")
    with pytest.raises(TraceError, match="less than one 1500-byte packet"):
        ops.write_mahimahi(z, tmp_path / "z.down")


@needs_traces
def test_mahimahi_round_trip_real(tmp_path):
    f = ROOT / "mahimahi" / "TMobile-LTE-short.down"
    t = load(f, bin_s=1.0)
    back = load(ops.write_mahimahi(t, tmp_path / "x.down"), bin_s=1.0)
    assert back.duration_s == pytest.approx(t.duration_s)
    # Per-second packet counts survive exactly, except the one opportunity added at the
    # loop period, which counts in the first second.
    widths = np.append(np.ones(len(t.rates_mbps) - 1), t.last_step_s)
    extra = np.round((back.rates_mbps - t.rates_mbps) * widths / 0.012)
    assert extra[0] == 1 and not extra[1:].any()


# -- trace directory, selection, hashes -------------------------------------------------
def test_trace_dir_env(monkeypatch, tmp_path):
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    assert trace_dir() == tmp_path.resolve()
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "nope"))
    with pytest.raises(TraceError, match="not a directory"):
        trace_dir()


def test_trace_dir_ignores_cwd(monkeypatch, tmp_path):
    monkeypatch.delenv(ENV_VAR, raising=False)
    before = trace_dir()
    (tmp_path / "shared" / "traces").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "shared")
    assert trace_dir() == before


def test_select_natural_order_and_seed(tmp_path):
    d = tmp_path / "ds" / "net"
    d.mkdir(parents=True)
    for i in range(12):
        (d / str(i)).write_text("0 1\n1 1\n")
    (d / "README.md").write_text("doc")
    files = list_traces("ds/net", tmp_path)
    assert [f.name for f in files] == [str(i) for i in range(12)]
    assert [f.name for f in select("ds/net", n=3, root=tmp_path)] == ["0", "1", "2"]
    a = select("ds/net", n=4, seed=7, root=tmp_path)
    assert a == select("ds/net", n=4, seed=7, root=tmp_path)
    assert a != select("ds/net", n=4, seed=8, root=tmp_path)
    with pytest.raises(TraceError, match="no such dataset folder"):
        list_traces("ds/none", tmp_path)


@needs_traces
def test_select_real_dataset():
    files = select("short-video-challenge/network/medium", n=5)
    assert [f.name for f in files] == ["0", "1", "2", "3", "4"]


def test_hashes(tmp_path):
    t = step_trace()
    same = Trace(t.times_s + 100, t.rates_mbps.copy(), 5.0, name="other", source="x")
    assert trace_hash(t) == trace_hash(same)
    assert trace_hash(t) != trace_hash(ops.scale(t, 1.0001))
    assert trace_hash(t).startswith("sha256:") and len(trace_hash(t)) == 71
    p = tmp_path / "f"
    p.write_bytes(b"abc")
    assert file_hash(p) == ("sha256:ba7816bf8f01cfea414140de5dae2223"
                            "b00361a396177a9cb410ff61f20015ad")


def test_open_trace_synthetic_and_fallback(monkeypatch, tmp_path):
    s = open_trace("synthetic:challenge-low", seed=3, duration_s=60)
    assert s.meta["profile"] == "challenge-low" and s.duration_s == pytest.approx(60)
    from traces import paths

    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.setattr(paths, "REPO_ROOT", tmp_path / "checkout")
    assert paths.trace_dir() is None
    fb = open_trace("short-video-challenge/network/medium/0", seed=1, duration_s=30)
    assert fb.meta["format"] == "synthetic" and "fallback" in fb.meta


@needs_traces
def test_open_trace_relative_to_trace_dir():
    t = open_trace("hsdpa/norway_bus_1")
    assert t.meta["format"] == "cooked"
    with pytest.raises(TraceError, match="no such trace file"):
        open_trace("hsdpa/does-not-exist")
