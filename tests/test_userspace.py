"""The user-space backend on loopback: real sockets, real relay, real child processes."""

import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from testbed.emulation import BackendError, open_backend
from testbed.emulation.measure import measure_link
from traces.trace import Trace


def step_trace(phase_s=2.0, rates=(2.0, 8.0, 1.0)):
    return Trace(np.arange(len(rates)) * phase_s, np.array(rates), phase_s, name="step")


def test_step_trace_per_phase_goodput(tmp_path):
    tr = step_trace()
    with open_backend("userspace", "access", [tr], {}, "us1", tmp_path) as net:
        assert net.kind == "userspace"
        r = measure_link(net, net.player_hosts[0], tr, 6, tmp_path, warmup_s=0)
    g = np.array(r["goodput_Bps"]) * 8 / 1e6
    for k, want in enumerate((2.0, 8.0, 1.0)):
        got = g[2 * k:2 * k + 2].mean()
        assert abs(got - want) / want < 0.15, (k, got, want, g)
    assert r["goodput"]["mape_pct"] < 10


def test_shared_bottleneck_is_shared(tmp_path):
    tr = Trace(np.array([0.0]), np.array([4.0]), 1.0, name="flat4")
    with open_backend("userspace", "shared", [tr, tr], {}, "us2", tmp_path) as net:
        ip, port = net.origin_bind(net.origin_host)
        srv = net.popen(net.origin_host, [sys.executable, "-m", "testbed.emulation.flow",
                                          "serve", "--host", ip, "--port", str(port)],
                        stdout=subprocess.PIPE)
        assert b"listening" in srv.stdout.readline()
        t0 = time.monotonic() + 0.5
        net.start_replay(t0)
        outs, procs = [], []
        for h in net.player_hosts:
            host, p = net.origin_url(h).split("//")[1].split(":")
            outs.append(tmp_path / f"{h}.json")
            procs.append(net.popen(h, [sys.executable, "-m", "testbed.emulation.flow", "recv",
                                       "--host", host, "--port", p, "--t0", repr(t0),
                                       "--duration-s", "3", "--out", str(outs[-1])]))
        assert [p.wait(20) for p in procs] == [0, 0]
        rx = [net.interface_bytes(h)["rx_bytes"] for h in net.player_hosts]
    import json

    per = [sum(json.loads(o.read_text())["bytes"][10:]) * 8 / 2 / 1e6 for o in outs]
    assert sum(per) == pytest.approx(4.0, rel=0.1), per      # the two share 4 Mbit/s
    assert min(per) > 0.5, per
    assert all(x > 0 for x in rx)


def test_delay_is_applied_both_ways(tmp_path):
    tr = Trace(np.array([0.0]), np.array([10.0]), 1.0, name="flat10")
    with open_backend("userspace", "access", [tr], {"delay_ms": 50}, "us3", tmp_path) as net:
        ip, port = net.origin_bind(net.origin_host)
        srv = socket.create_server((ip, port))
        net.start_replay()
        host, p = net.origin_url(net.player_hosts[0]).split("//")[1].split(":")
        c = socket.create_connection((host, int(p)))
        s, _ = srv.accept()
        rtts = []
        for _ in range(3):
            t = time.monotonic()
            c.sendall(b"x")
            assert s.recv(1) == b"x"
            s.sendall(b"y")
            assert c.recv(1) == b"y"
            rtts.append(time.monotonic() - t)
        c.close(), s.close(), srv.close()
        params = net.applied_link_params()
    assert 0.095 < min(rtts) < 0.2, rtts
    assert params["links"][0]["delay_ms_applied"] == 50


def test_everything_is_released_on_exception(tmp_path):
    tr = step_trace()
    with pytest.raises(RuntimeError, match="mid-run"):
        with open_backend("userspace", "access", [tr, tr], {}, "us4", tmp_path) as net:
            proc = net.popen(net.player_hosts[0], [sys.executable, "-c",
                                                   "import time; time.sleep(60)"])
            port = int(net.origin_url(net.player_hosts[0]).rsplit(":", 1)[1])
            socket.create_connection(("127.0.0.1", port)).close()
            raise RuntimeError("mid-run")
    assert proc.poll() is not None
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1)
    import json

    owned = json.loads((tmp_path / "owned.json").read_text())
    assert {e["state"] for e in owned["entries"]} == {"removed"}


def test_bad_options_and_names():
    tr = step_trace()
    with pytest.raises(BackendError, match="unknown key"):
        open_backend("userspace", "access", [tr], {"queue_pkts": 5}, "x", "/tmp")
    with pytest.raises(BackendError, match="run_id"):
        open_backend("userspace", "access", [tr], {}, "Bad-Id!", "/tmp")
    with pytest.raises(BackendError, match="backend 'tc'"):
        open_backend("tc", "access", [tr], {}, "x", "/tmp")
    with pytest.raises(BackendError, match="unknown topology"):
        open_backend("userspace", "ring", [tr], {}, "x", "/tmp")
    with pytest.raises(BackendError, match=r"loss_pct: expected a number in \[0, 100\)"):
        open_backend("userspace", "access", [tr], {"loss_pct": 100}, "x", "/tmp")


def test_loss_is_refused_unless_allowed_and_recorded(tmp_path):
    tr = step_trace()
    with pytest.raises(BackendError, match="userspace backend cannot apply loss"):
        with open_backend("userspace", "access", [tr], {"loss_pct": 1}, "us6", tmp_path):
            pass
    with open_backend("userspace", "access", [tr], {"loss_pct": 1, "allow_no_loss": True},
                      "us6", tmp_path) as net:
        params = net.applied_link_params()
    link = params["links"][0]
    assert link["loss_pct_requested"] == 1 and link["loss_pct_applied"] == 0.0
    assert any("loss is not emulated" in n for n in params["notes"])
