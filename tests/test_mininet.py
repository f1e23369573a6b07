"""Mininet backend as root: trace replay fidelity, the three topologies, teardown."""

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from testbed.emulation import BackendError, open_backend
from testbed.emulation.measure import measure_link
from testbed.emulation.mininet_backend import mininet_available
from traces.trace import Trace

pytestmark = [pytest.mark.root,
              pytest.mark.skipif(os.geteuid() != 0 or mininet_available() is not None,
                                 reason=f"Mininet unavailable: {mininet_available()}")]


def devices_with(prefix: str) -> list[str]:
    return [d for d in os.listdir("/sys/class/net") if d.startswith(prefix)]


def owned_pids(workdir) -> list[int]:
    """PIDs the run recorded in its ledger (host shells, tc batch, flows...)."""
    owned = json.loads((workdir / "owned.json").read_text())
    return [e["pid"] for e in owned["entries"] if "pid" in e]


def assert_nothing_left(workdir, prefix: str) -> None:
    """No device named with the run id and no process of the run's ledger is left."""
    owned = json.loads((workdir / "owned.json").read_text())
    assert _leftovers(owned_pids(workdir), prefix) == ([], [])
    assert {e["state"] for e in owned["entries"]} == {"removed"}


def test_step_trace_per_phase_goodput_within_15pct(tmp_path):
    tr = Trace(np.array([0.0, 5.0, 10.0]), np.array([2.0, 8.0, 1.0]), 5.0, name="step")
    with open_backend("mininet", "access", [tr], {}, "mt1", tmp_path) as net:
        assert net.kind == "mininet"
        r = measure_link(net, net.player_hosts[0], tr, 15, tmp_path, warmup_s=0)
        params = net.applied_link_params()
    g = np.array(r["goodput_Bps"]) * 8 / 1e6
    # Each phase's mean after its first second: the step itself lands inside that second
    # and a busy 2-core CI machine can shift the receiver's reads by tens of ms.
    for k, want in enumerate((2.0, 8.0, 1.0)):
        got = g[5 * k + 1:5 * k + 5].mean()
        assert abs(got - want) / want < 0.15, (k, got, want, g.round(2),
                                               params["links"][0]["replay"])
    link = params["links"][0]
    assert link["tc_errors"] == "" and link["replay"]["changes"] >= 3
    assert r["wire"]["mape_pct"] < 10
    assert len(owned_pids(tmp_path)) >= 6     # 3 shells (2 hosts, bridge), tc, 2 flows
    assert_nothing_left(tmp_path, "pbmt1")


def test_thin_seconds_do_not_block_the_fast_ones(tmp_path):
    # 0.1-s bins: one 1500-byte packet in the first bin of each even second, 3 Mbit/s in the
    # odd ones (a Mahimahi UMTS trace looks like this). HTB owes a frame's cost in time at
    # the rate in force when it left; replayed bin by bin, the thin seconds sent an extra
    # frame at their own rate and left the next fast second blocked for up to a second.
    r = np.concatenate([[0.12] + [0.0] * 9 if k % 2 == 0 else [3.0] * 10 for k in range(8)])
    tr = Trace(np.round(np.arange(len(r)) * 0.1, 6), r, 0.1, name="thin-fat")
    with open_backend("mininet", "access", [tr], {}, "mt9", tmp_path) as net:
        m = measure_link(net, net.player_hosts[0], tr, 8, tmp_path, warmup_s=0)
        link = net.applied_link_params()["links"][0]
    wire = np.array(m["wire_Bps"]) / 1514
    want = np.array(m["trace_Bps"]) * m["rate_factor"] / 1514
    assert link["replay_bins"] < len(r) // 2        # thin seconds were merged
    for k in (3, 5, 7):     # second 1 is TCP's start-up
        assert abs(wire[k] - want[k]) / want[k] < 0.1, (k, wire.round(1), want.round(1))
    for k in (2, 4, 6):
        assert wire[k] <= 2.5, (k, wire.round(1))   # ~1 frame, not a burst
    assert_nothing_left(tmp_path, "pbmt9")


@pytest.mark.parametrize("topology", ["access", "shared", "edge"])
def test_topology_builds_and_passes_traffic(tmp_path, topology):
    tr = Trace(np.array([0.0]), np.array([4.0]), 1.0, name="flat4")
    with open_backend("mininet", topology, [tr, tr], {}, "mt2", tmp_path) as net:
        assert len(net.player_hosts) == 2
        r = measure_link(net, net.player_hosts[1], tr, 3, tmp_path)
        params = net.applied_link_params()
        assert net.interface_bytes(net.player_hosts[1])["rx_bytes"] > 500_000
    got = np.mean(r["goodput_Bps"][1:]) * 8 / 1e6
    assert got == pytest.approx(4.0, rel=0.15)
    if topology == "edge":
        note = params["unshaped_delays"][0]
        assert note["delay_ms_requested"] == 20.0
        assert note["delay_ms_applied"] == (20.0 if params["netem_available"] else 0.0)
    assert_nothing_left(tmp_path, "pbmt2")


def _leftovers(owned_pids, prefix):
    alive = [p for p in owned_pids if os.path.exists(f"/proc/{p}")]
    return devices_with(prefix), alive


def test_nothing_left_after_exception_mid_run(tmp_path):
    tr = Trace(np.array([0.0]), np.array([2.0]), 1.0)
    with pytest.raises(RuntimeError, match="mid-run"):
        with open_backend("mininet", "access", [tr, tr], {}, "mt3", tmp_path) as net:
            net.popen(net.player_hosts[0], ["sleep", "60"])
            net.start_replay()
            assert len(devices_with("pbmt3")) >= 4
            raise RuntimeError("mid-run")
    owned = json.loads((tmp_path / "owned.json").read_text())
    pids = [e["pid"] for e in owned["entries"] if "pid" in e]
    assert len(pids) >= 5          # 3 host shells, tc batch, sleep
    assert _leftovers(pids, "pbmt3") == ([], [])
    assert {e["state"] for e in owned["entries"]} == {"removed"}


CHILD = """
import sys, time, numpy as np
from traces.trace import Trace
from testbed.emulation import open_backend
tr = Trace(np.array([0.0]), np.array([2.0]), 1.0)
with open_backend("mininet", "access", [tr, tr], {}, sys.argv[1], sys.argv[2]) as net:
    net.popen(net.player_hosts[0], ["sleep", "60"])
    net.start_replay()
    print("ready", flush=True)
    if sys.argv[3] == "crash":
        import os; os._exit(3)
    time.sleep(60)
"""


@pytest.mark.parametrize("how", ["sigterm", "sigint", "crash"])
def test_signal_or_crash_leaves_nothing(tmp_path, how):
    import signal

    from testbed.emulation import cleanup_owned

    rid = {"sigterm": "mt4", "sigint": "mt5", "crash": "mt6"}[how]
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    p = subprocess.Popen([sys.executable, "-c", CHILD, rid, str(tmp_path),
                          "crash" if how == "crash" else "wait"],
                         stdout=subprocess.PIPE, env=env)
    assert p.stdout.readline().strip() == b"ready"
    owned = json.loads((tmp_path / "owned.json").read_text())
    pids = [e["pid"] for e in owned["entries"] if "pid" in e]
    if how == "crash":
        p.wait(10)
        assert devices_with(f"pb{rid}"), "a crash leaves devices behind (until cleanup)"
        removed = cleanup_owned(tmp_path / "owned.json")
        assert any(r.startswith("host") for r in removed)
    else:
        p.send_signal(signal.SIGTERM if how == "sigterm" else signal.SIGINT)
        p.wait(20)
    deadline = time.monotonic() + 5
    while _leftovers(pids, f"pb{rid}") != ([], []) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _leftovers(pids, f"pb{rid}") == ([], [])


def _kernel_has_netem() -> bool:
    probe = subprocess.run(["ip", "link", "add", "pbprobe0", "type", "veth", "peer", "name",
                            "pbprobe1"], check=False)
    has = subprocess.run(["tc", "qdisc", "add", "dev", "pbprobe0", "root", "netem", "delay",
                          "1ms"], capture_output=True, check=False).returncode == 0
    if probe.returncode == 0:
        subprocess.run(["ip", "link", "del", "pbprobe0"], check=False)
    return has


@pytest.mark.parametrize("key,value,allow,other", [
    ("delay_ms", 20, "allow_no_delay", "allow_no_loss"),
    ("loss_pct", 2, "allow_no_loss", "allow_no_delay"),
])
def test_explicit_delay_or_loss_without_netem_is_refused_unless_allowed(tmp_path, key, value,
                                                                        allow, other):
    tr = Trace(np.array([0.0]), np.array([2.0]), 1.0)
    if _kernel_has_netem():
        pytest.skip("this kernel has netem")
    with pytest.raises(BackendError, match=f"{key}={value} was requested .* no netem"):
        with open_backend("mininet", "access", [tr], {key: value}, "mt7", tmp_path):
            pass
    assert devices_with("pbmt7") == []
    # Permission for the one is not permission for the other.
    with pytest.raises(BackendError, match=allow):
        with open_backend("mininet", "access", [tr], {key: value, other: True}, "mt7",
                          tmp_path):
            pass
    with open_backend("mininet", "access", [tr], {key: value, allow: True}, "mt7",
                      tmp_path) as net:
        params = net.applied_link_params()
    link = params["links"][0]
    assert params["netem_available"] is False
    name = key.rsplit("_", 1)[0]
    assert link[f"{key}_requested"] == value and link[f"{key}_applied"] == 0.0
    assert link[f"{'loss_pct' if name == 'delay' else 'delay_ms'}_requested"] == 0
    assert_nothing_left(tmp_path, "pbmt7")
