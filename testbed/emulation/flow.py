"""A saturating TCP flow for link measurements: ``serve`` sends zeros to every connection,
``recv`` counts the bytes it receives in time bins aligned to a shared monotonic t0.

    python -m testbed.emulation.flow serve --host IP --port N [--cc NAME]
    python -m testbed.emulation.flow recv --host IP --port N --t0 T --duration-s D --out F

``t0`` is a ``time.monotonic()`` value (the clock is shared by every namespace on the
machine), so bins line up with the trace replay started at the same t0. ``recv`` writes
JSON: ``{"bin_s", "bytes": [per bin], "t0"}``; it ends after ``duration_s`` from t0.
``serve --cc`` sets the sender's TCP congestion control (default: the system's, which it
prints in its "listening" line, so a measurement can record what it used).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import threading
import time
from pathlib import Path

CHUNK = b"\0" * 65536


def serve(host: str, port: int, cc: str | None = None) -> None:
    srv = socket.create_server((host, port), reuse_port=False)
    if cc:
        try:
            srv.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, cc.encode())
        except OSError as exc:
            raise SystemExit(f"flow serve: --cc {cc!r}: {exc} (available: "
                             f"{_available_cc()})") from None
    used = srv.getsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, 16)
    print(json.dumps({"event": "listening", "port": port,
                      "cc": used.split(b"\0", 1)[0].decode()}), flush=True)

    def pump(c: socket.socket) -> None:
        try:
            with c:
                if cc:   # accepted sockets inherit it on Linux; set it anyway, explicitly
                    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, cc.encode())
                while True:
                    c.sendall(CHUNK)
        except OSError:
            pass

    while True:
        c, _ = srv.accept()
        threading.Thread(target=pump, args=(c,), daemon=True).start()


def _available_cc() -> str:
    try:
        return Path("/proc/sys/net/ipv4/tcp_available_congestion_control").read_text().strip()
    except OSError:
        return "unknown"


def recv(host: str, port: int, t0: float, duration_s: float, bin_s: float, out: Path,
         connect_deadline_s: float = 10.0) -> None:
    end = time.monotonic() + connect_deadline_s
    while True:
        try:
            s = socket.create_connection((host, port), timeout=2)
            break
        except OSError:
            if time.monotonic() > end:
                raise
            time.sleep(0.05)
    n = int(round(duration_s / bin_s))
    bins = [0] * n
    s.settimeout(0.5)
    buf = bytearray(262144)
    with s:
        while True:
            now = time.monotonic()
            if now - t0 >= duration_s:
                break
            try:
                k = s.recv_into(buf)
            except TimeoutError:
                continue
            if k == 0:
                break
            i = int((time.monotonic() - t0) / bin_s)
            if 0 <= i < n:
                bins[i] += k
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps({"bin_s": bin_s, "t0": t0, "bytes": bins}))
    tmp.replace(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m testbed.emulation.flow",
                                 description="Saturating TCP flow for link measurements.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("serve", help="send zeros to every connection, forever")
    a.add_argument("--host", default="0.0.0.0")
    a.add_argument("--port", type=int, required=True)
    a.add_argument("--cc", default=None, help="TCP congestion control of the sender "
                   "(default: the system's)")
    b = sub.add_parser("recv", help="receive and count bytes per bin from t0")
    b.add_argument("--host", required=True)
    b.add_argument("--port", type=int, required=True)
    b.add_argument("--t0", type=float, required=True, help="time.monotonic() of bin 0")
    b.add_argument("--duration-s", type=float, required=True)
    b.add_argument("--bin-s", type=float, default=0.1)
    b.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    # A measurement tool: as root, run ahead of ordinary load so that a busy machine
    # delays our reads less (the link, not the scheduler, should be what is measured).
    if hasattr(os, "setpriority") and os.geteuid() == 0:
        os.setpriority(os.PRIO_PROCESS, 0, -10)
    if args.cmd == "serve":
        serve(args.host, args.port, args.cc)
    else:
        recv(args.host, args.port, args.t0, args.duration_s, args.bin_s, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
