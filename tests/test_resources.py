"""players.resources: the psutil sampler on this very process."""

import json
import socket
import time

import pytest

from players.resources import ResourceSampler, totals


def test_sampler_sees_cpu_memory_and_loopback_bytes(tmp_path):
    path = tmp_path / "res.jsonl"
    t0 = time.monotonic()
    s = ResourceSampler(path, interval_s=0.1, clock=lambda: time.monotonic() - t0).start()
    # burn ~0.3 s of CPU, hold 64 MiB, send 1 MiB over loopback
    end = time.process_time() + 0.3
    while time.process_time() < end:
        pass
    block = bytearray(64 * 2**20)
    block[::4096] = b"\x01" * len(block[::4096])
    srv = socket.create_server(("127.0.0.1", 0))
    cli = socket.create_connection(srv.getsockname())
    conn, _ = srv.accept()
    payload = b"x" * 2**20
    cli.sendall(payload)
    got = 0
    while got < len(payload):
        got += len(conn.recv(65536))
    for x in (cli, conn, srv):
        x.close()
    time.sleep(0.35)
    tot = s.stop()
    del block
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert len(lines) == tot["samples"] >= 4
    assert [r["t_s"] for r in lines] == sorted(r["t_s"] for r in lines)
    assert lines[-1]["cpu_s"] - lines[0]["cpu_s"] >= 0.25
    assert tot["peak_rss_mb"] >= lines[0]["rss_mb"] + 50
    assert tot["net_delta"]["lo"]["rx_bytes"] >= 2**20
    # the sampler's own cost is small next to what it measures
    assert 0 < tot["sampler_cpu_s"] < 0.1 * tot["cpu_s"]
    assert totals(lines) == tot


def test_interval_must_be_positive():
    with pytest.raises(ValueError, match="sample_interval_s"):
        ResourceSampler(None, interval_s=0)
    assert totals([])["samples"] == 0
