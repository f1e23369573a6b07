"""tc command builders, rate policy and the replay schedule/thread (no root)."""

import time

import numpy as np
import pytest

from testbed.emulation import tc
from testbed.emulation.replay import Port, ReplayThread, make_schedule
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
    port = Port("x", make_schedule(tr), lambda off, mbps, w: [f"{mbps:g}"],
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
