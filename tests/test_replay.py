"""tc command builders, rate policy and the replay schedule/thread (no root)."""

import time

import numpy as np
import pytest

from testbed.emulation import tc
from testbed.emulation.replay import LagStats, Port, ReplayThread, make_schedule
from traces import load
from traces.trace import Trace


def test_zero_capacity_is_one_frame_per_bin_never_8bit():
    r = tc.shaped_rate_bps(0.0, 0.1, compensate=False)
    assert r == int(np.ceil(1514 * 8 / 0.1))
    assert tc.shaped_rate_bps(0.0, 0.5, compensate=True) == int(np.ceil(1514 * 8 / 0.5))


def test_compensation_scales_by_frame_over_payload():
    assert tc.shaped_rate_bps(2.0, 0.5, True) == round(2e6 * 1514 / 1448)
    assert tc.shaped_rate_bps(2.0, 0.5, False) == 2_000_000


def test_burst_and_queue_policy():
    assert tc.burst_bytes_for(1_000_000) == 2 * 1514          # floor: two frames
    assert tc.burst_bytes_for(80_000_000) == 100_000          # 10 ms of 80 Mbit/s
    assert tc.burst_bytes_for(80_000_000, 15000) == 15000
    assert tc.queue_packets_for(8_000_000, 100, None) == 100
    # 50 ms of 8 Mbit/s = 50 kB = 34 frames; resized with the rate, capped, floored.
    assert tc.queue_packets_for(8_000_000, 100, 50.0) == 34
    assert tc.queue_packets_for(100_000_000, 100, 50.0) == 100
    assert tc.queue_packets_for(10_000, 100, 50.0) == 4


def test_setup_and_change_commands():
    p = tc.ShapeParams(2_000_000, 3028, 100)
    cmds = tc.setup_cmds("veth0", p)
    assert cmds[0][:6] == ["qdisc", "add", "dev", "veth0", "root", "handle"]
    cls = " ".join(cmds[1])
    assert "ceil 2000000bit" in cls and "cburst 3028b" in cls and "burst 3028b" in cls
    assert cmds[2][-3:] == ["pfifo", "limit", "100"]
    q = tc.ShapeParams(8_000_000, 10000, 100)
    lines = tc.change_lines("veth0", p, q)
    assert lines == ["class change dev veth0 parent 1: classid 1:1 htb rate 8000000bit "
                     "ceil 8000000bit burst 10000b cburst 10000b"]
    assert not any("del" in line for line in lines)
    assert tc.change_lines("veth0", q, q) == []
    d = tc.ShapeParams(8_000_000, 10000, 50, delay_ms=20)
    assert tc.change_lines("veth0", q, d) == [
        "qdisc change dev veth0 parent 1:1 handle 10: netem delay 20ms limit 50"]


def test_netem_leaf_carries_loss_and_delay():
    lossy = tc.ShapeParams(2_000_000, 3028, 100, loss_pct=1.5)
    assert tc.setup_cmds("veth0", lossy)[2][-5:] == ["netem", "loss", "1.5%", "limit", "100"]
    both = tc.ShapeParams(2_000_000, 3028, 50, delay_ms=20, loss_pct=0.5)
    assert tc.change_lines("veth0", lossy, both) == [
        "qdisc change dev veth0 parent 1:1 handle 10: netem delay 20ms loss 0.5% limit 50"]
    assert tc.netem_args(0, 0) == ""


def _thin_then_fat(seconds: int = 6) -> Trace:
    """0.1-s bins: even seconds carry one 1500-byte packet (first bin), odd ones 2 Mbit/s."""
    r = np.concatenate([[0.12] + [0.0] * 9 if k % 2 == 0 else [2.0] * 10
                        for k in range(seconds)])
    return Trace(np.round(np.arange(len(r)) * 0.1, 6), r, 0.1)


def test_thin_bins_merge_inside_their_second_and_keep_its_bits():
    tr = _thin_then_fat()
    s = make_schedule(tr, min_bin_bytes=12 * 1500)
    ends = np.append(s.offsets_s[1:], s.period_s)
    bits = s.rates_mbps * (ends - s.offsets_s) * 1e6
    for k in range(6):
        inside = (s.offsets_s >= k - 1e-9) & (s.offsets_s < k + 1 - 1e-9)
        assert np.all(ends[inside] <= k + 1 + 1e-9)          # never across a second
        assert bits[inside].sum() == pytest.approx(tr.bits_between(k, k + 1))
    # A thin second becomes one bin; fast bins keep their 0.1-s steps.
    assert list(np.round(s.offsets_s[:2], 6)) == [0.0, 1.0]
    assert s.rates_mbps[0] == pytest.approx(0.012)
    assert make_schedule(tr).rates_mbps[0] == pytest.approx(0.12)   # off: bins as they were


def test_merging_fills_each_bin_to_the_minimum_unless_its_second_is_thin():
    rng = np.random.default_rng(0)
    r = rng.choice([0.0, 0.12, 0.24, 1.2, 6.0], size=300)
    tr = Trace(np.round(np.arange(300) * 0.1, 6), r, 0.1)
    s = make_schedule(tr, min_bin_bytes=8 * 1500)
    ends = np.append(s.offsets_s[1:], s.period_s)
    width = ends - s.offsets_s
    payload = s.rates_mbps * width * 1e6 / 8
    thin = payload < 8 * 1500 - 1e-6
    # thin bins only where a whole second carries less than the minimum
    for off, w in zip(s.offsets_s[thin], width[thin]):
        k = int(np.floor(off + 1e-9))
        assert tr.bits_between(k, k + 1) / 8 < 8 * 1500 and w >= 1 - 1e-9
    assert float(np.sum(payload)) == pytest.approx(tr.mean_mbps() * tr.duration_s * 1e6 / 8)


def test_thin_bins_get_whole_frames_that_outlast_the_bin():
    rates = np.array([0.012, 2.0, 0.0, 0.036, 0.012])   # Mbit/s per 1-s change
    dur = np.ones(5)
    out = tc.replay_rates_bps(rates, dur, dur, compensate=False, thin_frames=12)
    frame_bits = 1514 * 8
    # 12000 bit of capacity is 0.99 frame: carried, not sent; the next thin second gets it
    assert out[0] == int(frame_bits / (1.0 * (1 + tc.FRAME_SLACK)))   # 0 frames: the floor
    assert out[1] == tc.shaped_rate_bps(2.0, 1.0, False)    # fast bins: the trace rate
    assert out[2] == int(frame_bits / (1.0 * (1 + tc.FRAME_SLACK)))   # zero floor
    # 0.99 carried + 2.97 = 3.96 -> 3 frames, each lasting 1.01 / 3 s
    assert out[3] == int(3 * frame_bits / (1.0 * (1 + tc.FRAME_SLACK)))
    assert out[4] == int(1 * frame_bits / (1.0 * (1 + tc.FRAME_SLACK)))   # 0.96 + 0.99
    # thin_frames 0: the old per-bin policy (trace rate, one-frame floor)
    old = tc.replay_rates_bps(rates, dur, dur, compensate=True, thin_frames=0)
    assert list(old) == [tc.shaped_rate_bps(x, 1.0, True) for x in rates]


def test_thin_frames_add_up_to_the_trace():
    rng = np.random.default_rng(1)
    rates = rng.choice([0.0, 0.012, 0.024, 0.06], size=400)
    out = tc.replay_rates_bps(rates, np.ones(400), np.ones(400), compensate=True,
                              thin_frames=12)
    sent = np.round(out * 1.0 * (1 + tc.FRAME_SLACK) / (1514 * 8))   # frames per change
    sent[rates == 0] = 0                                   # the floor frame is extra
    want = rates.sum() * 1e6 * tc.TCP_OVERHEAD_FACTOR / (1514 * 8)
    assert want - 1 <= sent.sum() <= want


def test_lag_statistics_stay_bounded():
    st = LagStats(keep=100)
    for v in range(10_000):
        st.add(float(v % 1000))
    s = st.summary()
    assert s["changes"] == 10_000 and s["lag_ms_max"] == 999.0
    assert len(st._sample) == 100
    assert 300 < s["lag_ms_median"] < 700            # a uniform sample of 0..999
    exact = LagStats()
    for v in (3.0, 1.0, 2.0):
        exact.add(v)
    assert exact.summary() == {"changes": 3, "lag_ms_median": 2.0, "lag_ms_p99": 2.98,
                               "lag_ms_max": 3.0}
    assert LagStats().summary() == {"changes": 0}


def test_schedule_uses_trace_steps_and_merges_equal_neighbours():
    tr = Trace(np.array([0.0, 1.0, 2.0, 3.0]), np.array([1.0, 1.0, 3.0, 0.0]), 1.0)
    s = make_schedule(tr)
    assert s.bin_s is None
    assert list(s.offsets_s) == [0.0, 2.0, 3.0] and list(s.rates_mbps) == [1.0, 3.0, 0.0]
    assert s.period_s == 4.0
    assert s.at(3) == (4.0, 1.0, 1.0)      # loops
    assert s.rate_at(6.5) == 3.0


def test_fine_traces_are_replayed_in_100ms_bins(tmp_path):
    t = np.arange(0, 2, 0.02)
    tr = Trace(t, np.where(t < 1, 1.0, 5.0), 0.02)
    s = make_schedule(tr)
    assert s.bin_s == pytest.approx(0.1)
    assert s.rates_mbps[0] == pytest.approx(1.0) and s.rates_mbps[-1] == pytest.approx(5.0)
    s2 = make_schedule(tr, bin_s=0.5)
    assert s2.bin_s == 0.5


def test_schedule_of_a_real_trace_keeps_its_bits(shared_traces):
    tr = load(shared_traces / "hsdpa" / "norway_bus_1")
    s = make_schedule(tr)
    widths = np.diff(np.append(s.offsets_s, s.period_s))
    assert float(np.sum(widths * s.rates_mbps)) == pytest.approx(tr.mean_mbps() * tr.duration_s)


def test_replay_thread_applies_changes_on_time():
    tr = Trace(np.array([0.0, 0.2, 0.4]), np.array([1.0, 2.0, 3.0]), 0.2)
    got = []
    port = Port("x", make_schedule(tr), lambda i, off, mbps, w: [f"{mbps:g}"],
                lambda lines: got.append((time.monotonic(), lines)))
    t0 = time.monotonic()
    th = ReplayThread([port], t0)
    th.start()
    time.sleep(0.75)
    th.stop()
    assert th.error is None
    rates = [g[1][0] for g in got]
    assert rates[:4] == ["1", "2", "3", "1"]     # and loops after 0.6 s
    for (t, _), due in zip(got, [0.0, 0.2, 0.4, 0.6]):
        assert t - t0 == pytest.approx(due, abs=0.03)


@pytest.fixture
def shared_traces():
    from traces.paths import trace_dir

    d = trace_dir()
    if d is None or not (d / "hsdpa").exists():
        pytest.skip("no shared trace directory")
    return d
