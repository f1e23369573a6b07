"""The user-space backend: a trace-driven TCP relay per shaped link on 127.0.0.1.

Used where Mininet cannot run (no root, not Linux). Every host is this machine; the origin
listens on 127.0.0.1; each player talks to its own relay listener (``origin_url``), which
forwards to the origin. Downlink bytes (origin -> player) cross the shaped link with
Mahimahi's semantics: the trace becomes a list of delivery opportunities (one per 1500
bytes of capacity, ``traces.ops.to_mahimahi_ms``, looping); each opportunity moves up to
1500 bytes from the head of the link's FIFO queue, only bytes that were already queued at
that instant, and an unused opportunity is lost. Players behind the same shaped link (the
``shared`` topology) share its queue. The queue is finite (``queue_packets`` x 1500 bytes):
when full, the relay stops reading from the origin (TCP back-pressure) instead of dropping,
because the relay terminates TCP on both sides and cannot lose bytes of a stream. The
optional delay (the sum of the path's link delays, plus ``delay_ms``) is applied to both
directions. Uplink shaping is not emulated here (recorded in ``applied_link_params``).
Loss is not emulated either: dropping relayed bytes would corrupt the stream, not make the
sender retransmit (the relay terminates TCP). An explicit ``loss_pct`` is refused unless
``allow_no_loss``; topology losses are noted; both are recorded as requested vs applied.
Bytes count as application payload: the trace's Mbit/s are delivered as payload, so TCP
overhead compensation does not apply.
"""

from __future__ import annotations

import asyncio
import collections
import socket
import subprocess
import threading
import time

import numpy as np

from testbed.emulation.lifecycle import OwnedNet, warn
from testbed.emulation.options import BackendError
from traces.ops import to_mahimahi_ms

PACKET_BYTES = 1500
READ_BYTES = 16 * 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Conn:
    def __init__(self, listener: Listener, writer: asyncio.StreamWriter):
        self.listener = listener
        self.client_w = writer
        self.origin_w: asyncio.StreamWriter | None = None
        self.closed = False


class ShapedLink:
    """One shaped downlink: FIFO queue, delivery opportunities, delay line."""

    def __init__(self, name: str, trace, queue_bytes: int, delay_s: float):
        ms = to_mahimahi_ms(trace)
        self.name = name
        self.opp_s = ms[:-1].astype(np.float64) / 1000.0
        self.period_s = float(ms[-1]) / 1000.0
        self.queue_bytes = queue_bytes
        self.delay_s = delay_s
        self.queue: collections.deque = collections.deque()  # [conn, bytes|None, t_enq]
        self.queued = 0
        # Writers waiting for queue space, served first-come first-served (one wake per
        # freed opportunity) so no connection can starve the others.
        self.waiters: collections.deque = collections.deque()
        self.wake = asyncio.Event()
        self.delay_line: collections.deque = collections.deque()  # (t_due, conn, bytes|None)
        self.delivered_bytes = 0
        self.t0 = time.monotonic()
        self.k = 0
        self.task: asyncio.Task | None = None

    def restart(self, t0: float) -> None:
        self.t0 = t0
        self.k = 0
        self.wake.set()

    def opp_time(self, k: int) -> float:
        loop, i = divmod(k, len(self.opp_s))
        return self.t0 + loop * self.period_s + float(self.opp_s[i])

    async def put(self, conn: _Conn, data: bytes | None) -> None:
        """Queue ``data`` (None = end of stream) for ``conn``; waits while the queue is full."""
        if data is not None and (self.queued >= self.queue_bytes or self.waiters):
            fut = asyncio.get_running_loop().create_future()
            self.waiters.append(fut)
            await fut
        now = time.monotonic()
        if data is None:
            self.queue.append([conn, None, now])
        else:
            for i in range(0, len(data), PACKET_BYTES):
                part = data[i:i + PACKET_BYTES]
                self.queue.append([conn, part, now])
                self.queued += len(part)
        self.wake.set()

    def drop(self, conn: _Conn) -> None:
        kept = collections.deque()
        for item in self.queue:
            if item[0] is conn:
                if item[1] is not None:
                    self.queued -= len(item[1])
            else:
                kept.append(item)
        self.queue = kept
        self._wake_writer()

    def _wake_writer(self) -> None:
        while self.waiters and self.queued < self.queue_bytes:
            fut = self.waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                return

    def _emit(self, conn: _Conn, data: bytes | None) -> None:
        if conn.closed:
            return
        if data is None or conn.client_w.is_closing():
            conn.listener.close_conn(conn)
            return
        conn.client_w.write(data)
        conn.listener.down_bytes += len(data)
        self.delivered_bytes += len(data)

    def _serve(self, t_opp: float) -> None:
        budget = PACKET_BYTES
        while self.queue and self.queue[0][2] <= t_opp:
            item = self.queue[0]
            conn, data = item[0], item[1]
            if data is None:
                self.queue.popleft()
                self._out(t_opp, conn, None)
                continue
            if budget <= 0:
                break
            take = data[:budget]
            budget -= len(take)
            self.queued -= len(take)
            if len(take) == len(data):
                self.queue.popleft()
            else:
                item[1] = data[len(take):]
            self._out(t_opp, conn, take)
        self._wake_writer()

    def _out(self, t_opp: float, conn: _Conn, data: bytes | None) -> None:
        if self.delay_s > 0:
            self.delay_line.append((t_opp + self.delay_s, conn, data))
        else:
            self._emit(conn, data)

    async def run(self) -> None:
        while True:
            now = time.monotonic()
            while self.delay_line and self.delay_line[0][0] <= now:
                _, conn, data = self.delay_line.popleft()
                self._emit(conn, data)
            t = self.opp_time(self.k)
            if not self.queue and not self.delay_line:
                # Idle: opportunities pass unused; skip them in bulk, then wait for data.
                while self.opp_time(self.k) <= now:
                    self.k += 1
                self.wake.clear()
                wait = self.opp_time(self.k) - now
                try:
                    await asyncio.wait_for(self.wake.wait(), timeout=max(wait, 0.0005))
                except TimeoutError:
                    pass
                continue
            while t <= now:
                self._serve(t)
                self.k += 1
                t = self.opp_time(self.k)
            nxt = t if self.queue else float("inf")
            if self.delay_line:
                nxt = min(nxt, self.delay_line[0][0])
            self.wake.clear()
            try:
                await asyncio.wait_for(self.wake.wait(), timeout=max(nxt - time.monotonic(),
                                                                     0.0002))
            except TimeoutError:
                pass


class Listener:
    """One player's relay port: accepts the player's connections, dials the origin."""

    def __init__(self, host: str, link: ShapedLink | None, origin_port: int, delay_s: float):
        self.host = host
        self.link = link
        self.origin_port = origin_port
        self.delay_s = delay_s
        self.port = 0
        self.server: asyncio.AbstractServer | None = None
        self.conns: set[_Conn] = set()
        self.down_bytes = 0
        self.up_bytes = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    def close_conn(self, conn: _Conn) -> None:
        if conn.closed:
            return
        conn.closed = True
        self.conns.discard(conn)
        for w in (conn.client_w, conn.origin_w):
            if w is not None:
                w.close()
        if self.link is not None:
            self.link.drop(conn)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        conn = _Conn(self, writer)
        self.conns.add(conn)
        try:
            o_reader, conn.origin_w = await asyncio.open_connection("127.0.0.1",
                                                                    self.origin_port)
        except OSError:
            self.close_conn(conn)
            return
        down = asyncio.ensure_future(self._down(conn, o_reader))
        try:
            while True:
                data = await reader.read(READ_BYTES)
                if not data:
                    break
                if self.delay_s > 0:
                    await asyncio.sleep(self.delay_s)
                self.up_bytes += len(data)
                conn.origin_w.write(data)
                await conn.origin_w.drain()
            if conn.origin_w.can_write_eof():
                conn.origin_w.write_eof()
            await down
        except (ConnectionError, OSError):
            self.close_conn(conn)
        finally:
            if not down.done():
                down.cancel()

    async def _down(self, conn: _Conn, o_reader: asyncio.StreamReader) -> None:
        try:
            while not conn.closed:
                data = await o_reader.read(READ_BYTES)
                if self.link is None:
                    if not data:
                        self.close_conn(conn)
                        return
                    conn.client_w.write(data)
                    self.down_bytes += len(data)
                    await conn.client_w.drain()
                    continue
                await self.link.put(conn, data or None)
                if not data:
                    return
        except (ConnectionError, OSError):
            self.close_conn(conn)


class UserspaceNet(OwnedNet):
    kind = "userspace"

    def _build(self) -> None:
        topo, o = self.topology, self.options
        if o.loss_pct > 0 and not o.allow_no_loss:
            raise BackendError(
                f"loss_pct={o.loss_pct:g} was requested but the userspace backend cannot "
                f"apply loss (its relay terminates TCP, so a dropped byte would corrupt the "
                f"stream instead of being retransmitted); set allow_no_loss = true to run "
                f"without the loss, or use the mininet backend on a kernel with netem")
        self.origin_port = free_port()
        self.links: dict[int, ShapedLink] = {}
        self.listeners: dict[str, Listener] = {}
        self.notes: list[str] = []
        if o.loss_pct > 0 or any(x.loss_pct > 0 for x in topo.links):
            self.notes.append(f"loss is not emulated by the userspace backend (requested "
                              f"{o.loss_pct:g}% on shaped links; topology losses "
                              f"{[x.loss_pct for x in topo.links if x.loss_pct > 0]} %)")
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run_loop():
            asyncio.set_event_loop(self.loop)
            self.loop.call_soon(ready.set)
            self.loop.run_forever()

        self.thread = threading.Thread(target=run_loop, name="promptbed-relay", daemon=True)
        self.thread.start()
        ready.wait(5)
        self.ledger.add("thread", remove=self._stop_loop, name="relay-loop")
        for link in topo.links:
            if link.shaped and link.direction in ("up", "both"):
                self.notes.append(f"link {link.a}-{link.b}: uplink shaping is not emulated "
                                  f"by the userspace backend")
        if self.notes:
            for n in self.notes:
                warn(n)
        for player in topo.players:
            path = topo.path(topo.origin, player)
            delay_ms = self.options.delay_ms + sum(
                x.delay_ms for a, b in zip(path, path[1:]) for x in topo.links
                if {x.a, x.b} == {a, b})
            link = topo.player_link(player)
            shaped = None
            if link is not None:
                k = topo.links.index(link)
                if k not in self.links:
                    trace = self.link_traces[link.trace]
                    shaped = self._call(self._make_link(
                        f"relay{k}", trace, self.options.queue_packets * 1500,
                        delay_ms / 1000.0))
                    self.links[k] = shaped
                shaped = self.links[k]
            lst = Listener(player, shaped, self.origin_port,
                           delay_ms / 1000.0 if shaped is None else shaped.delay_s)
            self._call(lst.start())
            self.ledger.add("relay", remove=lambda lst=lst: self._call(self._close(lst)),
                            name=f"relay-{player}", port=lst.port)
            self.listeners[player] = lst
        self.replay_started = False

    async def _make_link(self, name, trace, queue_bytes, delay_s) -> ShapedLink:
        link = ShapedLink(name, trace, queue_bytes, delay_s)
        link.task = asyncio.ensure_future(link.run())
        return link

    @staticmethod
    async def _close(lst: Listener) -> None:
        if lst.server is not None:
            lst.server.close()
        for c in list(lst.conns):
            lst.close_conn(c)

    def _call(self, coro, timeout_s: float = 10.0):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)

    def _stop_loop(self) -> None:
        async def cancel_all():
            for link in self.links.values():
                if link.task is not None:
                    link.task.cancel()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        if self.loop.is_running():
            try:
                self._call(cancel_all(), 5.0)
            except Exception:
                pass
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)
        if not self.loop.is_running():
            self.loop.close()

    # -- the API the run uses ----------------------------------------------------------
    def start_replay(self, t0: float | None = None) -> None:
        """Restart every shaped link's trace at ``t0`` (time.monotonic(); default now)."""
        if self.replay_started:
            raise BackendError("replay already started")
        t = time.monotonic() if t0 is None else t0

        async def restart():
            for link in self.links.values():
                link.restart(t)

        self._call(restart())
        self.replay_started = True

    def popen(self, host: str, argv: list[str], env: dict | None = None, stdout=None,
              stderr=None, cwd=None, stdin=None) -> subprocess.Popen:
        """Start ``argv`` on this machine (all hosts are 127.0.0.1), tracked."""
        self._check_host(host)
        return self._spawn([str(a) for a in argv], env=env, stdout=stdout, stderr=stderr,
                           cwd=cwd, stdin=subprocess.DEVNULL if stdin is None else stdin)

    def host_ip(self, host: str) -> str:
        self._check_host(host)
        return "127.0.0.1"

    def origin_bind(self, host: str) -> tuple[str, int]:
        self._check_host(host)
        return "127.0.0.1", self.origin_port

    def origin_url(self, player_host: str) -> str:
        self._check_host(player_host)
        lst = self.listeners.get(player_host)
        port = lst.port if lst is not None else self.origin_port
        return f"http://127.0.0.1:{port}"

    def interface_bytes(self, host: str) -> dict:
        """A player's relay counters (rx = delivered to it); other hosts: all relays."""
        self._check_host(host)
        if host in self.listeners:
            lst = self.listeners[host]
            return {"rx_bytes": lst.down_bytes, "tx_bytes": lst.up_bytes}
        return {"rx_bytes": sum(x.up_bytes for x in self.listeners.values()),
                "tx_bytes": sum(x.down_bytes for x in self.listeners.values())}

    def shaped_ports(self) -> list[dict]:
        return [{"link": f"{self.topology.links[k].a}-{self.topology.links[k].b}",
                 "dev": link.name, "direction": "down", "root_ns": True,
                 "trace_index": self.topology.links[k].trace}
                for k, link in self.links.items()]

    def port_tx_bytes(self, dev: str) -> int:
        """Payload bytes the named relay link has delivered ("wire" bytes)."""
        for link in self.links.values():
            if link.name == dev:
                return link.delivered_bytes
        raise BackendError(f"no shaped link named {dev!r}")

    def applied_link_params(self) -> dict:
        links = []
        for k, link in self.links.items():
            spec = self.topology.links[k]
            tr = self.link_traces[spec.trace]
            links.append({"link": f"{spec.a}-{spec.b}", "direction": "down",
                          "dev": link.name, "trace": tr.name,
                          "trace_mean_mbps": round(tr.mean_mbps(), 4),
                          "semantics": "mahimahi delivery opportunities (1500 B), ms grid",
                          "rate_factor": 1.0, "queue_packets": self.options.queue_packets,
                          "queue_full": "back-pressure (no drops)",
                          "delay_ms_requested": self.options.delay_ms + spec.delay_ms,
                          "delay_ms_applied": round(link.delay_s * 1000, 3),
                          "loss_pct_requested": spec.loss_pct or self.options.loss_pct,
                          "loss_pct_applied": 0.0,
                          "delivered_bytes": link.delivered_bytes})
        return {"backend": "userspace", "netem_available": None,
                "options": self.options.to_dict(), "links": links, "notes": self.notes}
