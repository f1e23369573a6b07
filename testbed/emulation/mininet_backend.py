"""The Mininet backend: namespaces per host, Linux bridges, HTB shaping replayed by tc.

Built with Mininet's Python API (LinuxBridge switches, no controller, no Open vSwitch) but
torn down by our own ledger: Mininet's cleanup kills by name and is never used. Mininet's
one-time ``fixLimits`` (host-wide sysctls) is skipped: a run changes only what it owns.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np

from testbed.emulation import tc
from testbed.emulation.lifecycle import OwnedNet, stop_popen, warn
from testbed.emulation.options import BackendError
from testbed.emulation.owned import process_start_time
from testbed.emulation.replay import Port, ReplayThread, make_schedule

SUBNET = "10.200"
ORIGIN_PORT = 8080
OFFLOADS = ("tso", "gso", "gro")
# Zero capacity becomes one frame per bin, but per second at most for fine (0.1-s) bins:
# one frame per 0.1 s would add 0.12 Mbit/s to every outage second.
ZERO_FLOOR_MIN_STEP_S = 1.0
MAHIMAHI_PACKET_BYTES = 1500   # the unit of LinkOptions.min_bin_frames


def mininet_available() -> str | None:
    """None when this process can build Mininet networks, else the reason it cannot."""
    if os.name != "posix" or not Path("/proc/net").exists():
        return "not Linux"
    if os.geteuid() != 0:
        return "needs root"
    for tool in ("mnexec", "tc", "ip", "brctl", "ethtool"):
        if shutil.which(tool) is None:
            return f"{tool} not found (Debian packages mininet, iproute2, bridge-utils, ethtool)"
    try:
        import mininet.net  # noqa: F401
    except ImportError as exc:
        return f"mininet Python package missing ({exc})"
    return None


def _run(argv: list[str], what: str) -> None:
    r = subprocess.run(argv, capture_output=True, text=True)
    if r.returncode != 0:
        raise BackendError(f"{what}: {' '.join(argv)}: {r.stderr.strip() or r.returncode}")


class MininetNet(OwnedNet):
    kind = "mininet"

    # -- build -------------------------------------------------------------------------
    def _build(self) -> None:
        why = mininet_available()
        if why:
            raise BackendError(f"Mininet backend unavailable: {why}")
        from mininet.log import setLogLevel
        from mininet.net import Mininet
        from mininet.nodelib import LinuxBridge

        setLogLevel("error")
        Mininet.inited = True  # skip fixLimits (host-wide sysctls we do not own)
        topo, L = self.topology, self.ledger
        pre = f"pb{self.run_id}"
        self.dev_host = {h.name: f"{pre}h{i}" for i, h in enumerate(topo.hosts)}
        self.dev_sw = {s: f"{pre}s{j}" for j, s in enumerate(topo.switches)}
        self.ip = {h.name: f"{SUBNET}.{i // 250}.{i % 250 + 1}" for i, h in enumerate(topo.hosts)}
        # link k: interface on end a / end b
        self.ifname = [(f"{pre}{k}a", f"{pre}{k}b") for k in range(len(topo.links))]
        longest = max([*self.dev_host.values(), *self.dev_sw.values(),
                       *(n for pair in self.ifname for n in pair)], key=len)
        if len(longest) > 15:
            raise BackendError(f"device name {longest!r} longer than 15 characters "
                               f"(shorter run id or fewer links needed)")
        self.netem: bool | None = None
        self.delay_notes: list[dict] = []
        self._probe_netem_if_needed(pre)

        net = Mininet(topo=None, controller=None, switch=LinuxBridge, build=False,
                      autoSetMacs=False, waitConnected=False, inNamespace=False)
        self.mn = net
        self.nodes = {}
        for h in topo.hosts:
            node = net.addHost(self.dev_host[h.name], ip=f"{self.ip[h.name]}/16")
            L.add("host", remove=lambda n=node: self._stop_host(n), pid=node.shell.pid,
                  start_time=process_start_time(node.shell.pid), group=True,
                  name=self.dev_host[h.name], generic=h.name)
            self.nodes[h.name] = node
        for s in topo.switches:
            L.add("bridge", name=self.dev_sw[s])
            self.nodes[s] = net.addSwitch(self.dev_sw[s], cls=LinuxBridge)
            # A LinuxBridge node still runs a (root-namespace) shell: stop it like a host's.
            sw = self.nodes[s]
            L.add("host", remove=lambda n=sw: self._stop_host(n), pid=sw.shell.pid,
                  start_time=process_start_time(sw.shell.pid), group=True,
                  name=self.dev_sw[s], generic=s)
        for k, link in enumerate(topo.links):
            ia, ib = self.ifname[k]
            root_end = ia if link.a in self.dev_sw else ib if link.b in self.dev_sw else None
            L.add("link", name=root_end or ia, ends=[ia, ib], in_root=root_end is not None)
            net.addLink(self.nodes[link.a], self.nodes[link.b], intfName1=ia, intfName2=ib)
        net.build()
        # Bridges made here, not by LinuxBridge.start (it only enslaves ports whose names
        # contain the switch name, and deletes a bridge of that name first).
        for s in topo.switches:
            br = self.dev_sw[s]
            _run(["ip", "link", "add", "name", br, "type", "bridge", "forward_delay", "0",
                  "stp_state", "0"], "bridge")
        for k, link in enumerate(topo.links):
            for end, name in zip((link.a, link.b), self.ifname[k]):
                if end in self.dev_sw:
                    _run(["ip", "link", "set", "dev", name, "master", self.dev_sw[end], "up"],
                         "bridge port")
        for s in topo.switches:
            _run(["ip", "link", "set", "dev", self.dev_sw[s], "up"], "bridge")
        for k, link in enumerate(topo.links):
            for end, name in zip((link.a, link.b), self.ifname[k]):
                self._ns_run(end, ["ethtool", "-K", name, *(x for o in OFFLOADS
                                                          for x in (o, "off"))], "ethtool")
        self._setup_shaping()
        self.replay: ReplayThread | None = None

    def _probe_netem_if_needed(self, pre: str) -> None:
        o, links = self.options, self.topology.links
        wanted = (o.delay_ms > 0 or o.loss_pct > 0
                  or any(x.delay_ms > 0 or x.loss_pct > 0 for x in links))
        if not wanted:
            return
        dev = f"{pre}np"
        self.ledger.add("probe", name=dev)
        _run(["ip", "link", "add", dev, "type", "veth", "peer", "name", f"{dev}p"],
             "netem probe")
        r = subprocess.run(["tc", *tc.delay_probe_cmds(dev)[0]], capture_output=True, text=True)
        self.netem = r.returncode == 0
        subprocess.run(["ip", "link", "del", dev], capture_output=True)
        if not self.netem:
            if o.delay_ms > 0 and not o.allow_no_delay:
                raise BackendError(
                    f"delay_ms={o.delay_ms:g} was requested but this kernel has no "
                    f"netem (tc: {r.stderr.strip()}); set allow_no_delay = true to run "
                    f"without the delay, or use the userspace backend")
            if o.loss_pct > 0 and not o.allow_no_loss:
                raise BackendError(
                    f"loss_pct={o.loss_pct:g} was requested but this kernel has no netem "
                    f"(tc: {r.stderr.strip()}); set allow_no_loss = true to run without "
                    f"the loss (the userspace backend cannot apply loss either)")
            warn(f"netem is not available in this kernel: delays and losses are NOT applied "
                 f"(requested {o.delay_ms:g} ms, {o.loss_pct:g}% on shaped links; topology "
                 f"delays {[x.delay_ms for x in links if x.delay_ms > 0]} ms, losses "
                 f"{[x.loss_pct for x in links if x.loss_pct > 0]} %)")

    def _ns_of(self, node: str):
        """None for the root namespace (switch ports), else the host's shell pid."""
        return None if node in self.dev_sw else self.nodes[node].shell.pid

    def _ns_argv(self, node: str, argv: list[str]) -> list[str]:
        ns = self._ns_of(node)
        return argv if ns is None else ["mnexec", "-a", str(ns), *argv]

    def _ns_run(self, node: str, argv: list[str], what: str) -> None:
        _run(self._ns_argv(node, argv), what)

    def _stop_host(self, node) -> None:
        node.terminate()
        if node.shell is not None:
            stop_popen(node.shell)

    # -- shaping -----------------------------------------------------------------------
    def _egress(self):
        """(link index, node whose interface shapes, its interface, direction label)."""
        for k, link in enumerate(self.topology.links):
            ia, ib = self.ifname[k]
            if link.shaped and link.direction in ("down", "both"):
                yield k, link.a, ia, "down"
            if link.shaped and link.direction in ("up", "both"):
                yield k, link.b, ib, "up"

    def _params(self, rate: int, delay_ms: float, loss_pct: float) -> tc.ShapeParams:
        o = self.options
        return tc.ShapeParams(rate, tc.burst_bytes_for(rate, o.burst_bytes),
                              tc.queue_packets_for(rate, o.queue_packets, o.queue_ms),
                              delay_ms if self.netem else 0.0,
                              loss_pct if self.netem else 0.0)

    def _setup_shaping(self) -> None:
        self.ports: list[dict] = []
        self._pipes: dict = {}
        errdir = self.workdir
        for k, node, dev, dirn in self._egress():
            link = self.topology.links[k]
            trace = self.link_traces[link.trace]
            sched = make_schedule(trace, self.options.bin_s,
                                  self.options.min_bin_frames * MAHIMAHI_PACKET_BYTES)
            delay = link.delay_ms or self.options.delay_ms
            loss = link.loss_pct or self.options.loss_pct
            rates = tc.replay_rates_bps(
                sched.rates_mbps, np.diff(np.append(sched.offsets_s, sched.period_s)),
                sched.widths_s, self.options.compensate_tcp_overhead,
                self.options.min_bin_frames, ZERO_FLOOR_MIN_STEP_S)
            p0 = self._params(int(rates[0]), delay, loss)
            self.ledger.add("qdisc", dev=dev, ns=self._ns_of(node))
            for cmd in tc.setup_cmds(dev, p0):
                self._ns_run(node, ["tc", *cmd], f"shaping {link.a}-{link.b}")
            ns = self._ns_of(node)
            if ns not in self._pipes:
                err = open(errdir / f"tc-batch-{len(self._pipes)}.err", "w")
                proc = self._spawn(self._ns_argv(node, ["tc", "-force", "-batch", "-"]),
                                   kind="tc_batch", stdin=subprocess.PIPE,
                                   stdout=subprocess.DEVNULL, stderr=err, text=True)
                err.close()
                self._pipes[ns] = (proc, Path(err.name))
            self.ports.append({"k": k, "node": node, "dev": dev, "direction": dirn,
                               "schedule": sched, "rates_bps": rates, "current": p0,
                               "delay_ms": delay,
                               "loss_pct": loss, "trace": trace})
        # Unshaped links with a delay or loss: netem root on both egresses where available.
        for k, link in enumerate(self.topology.links):
            if link.shaped or (link.delay_ms <= 0 and link.loss_pct <= 0):
                continue
            note = {"link": f"{link.a}-{link.b}", "delay_ms_requested": link.delay_ms,
                    "delay_ms_applied": 0.0, "loss_pct_requested": link.loss_pct,
                    "loss_pct_applied": 0.0}
            if self.netem:
                for end, dev in zip((link.a, link.b), self.ifname[k]):
                    self.ledger.add("qdisc", dev=dev, ns=self._ns_of(end))
                    self._ns_run(end, ["tc", "qdisc", "add", "dev", dev, "root", "netem",
                                       *tc.netem_args(link.delay_ms, link.loss_pct).split()],
                                 "delay/loss")
                note["delay_ms_applied"] = link.delay_ms
                note["loss_pct_applied"] = link.loss_pct
            self.delay_notes.append(note)

    def start_replay(self, t0: float | None = None) -> None:
        """Start replaying every shaped link's trace from its beginning at ``t0``
        (time.monotonic(); default now)."""
        import time

        if self.replay is not None:
            raise BackendError("replay already started")
        ports = []
        for p in self.ports:
            proc, _ = self._pipes[self._ns_of(p["node"])]

            def apply(i, off, mbps, width, p=p):
                new = self._params(int(p["rates_bps"][i]), p["delay_ms"], p["loss_pct"])
                lines = tc.change_lines(p["dev"], p["current"], new)
                p["current"] = new
                return lines

            def write(lines, proc=proc):
                proc.stdin.write("\n".join(lines) + "\n")
                proc.stdin.flush()

            ports.append(Port(p["dev"], p["schedule"], apply, write))
        self.replay = ReplayThread(ports, time.monotonic() if t0 is None else t0)
        self.ledger.add("thread", remove=self.replay.stop, name="replay")
        self.replay.start()

    # -- the API the run uses ----------------------------------------------------------
    def popen(self, host: str, argv: list[str], env: dict | None = None, stdout=None,
              stderr=None, cwd=None, stdin=None) -> subprocess.Popen:
        """Start ``argv`` inside ``host``'s network namespace (tracked, own session)."""
        self._check_host(host)
        return self._spawn(self._ns_argv(host, [str(a) for a in argv]), env=env,
                           stdout=stdout, stderr=stderr, cwd=cwd,
                           stdin=subprocess.DEVNULL if stdin is None else stdin)

    def host_ip(self, host: str) -> str:
        self._check_host(host)
        return self.ip[host]

    def origin_bind(self, host: str) -> tuple[str, int]:
        return self.host_ip(host), ORIGIN_PORT

    def origin_url(self, player_host: str) -> str:
        self._check_host(player_host)
        return f"http://{self.ip[self.origin_host]}:{ORIGIN_PORT}"

    def interface_bytes(self, host: str) -> dict:
        """Bytes received/sent by ``host``'s interfaces (its namespace's /proc/net/dev)."""
        self._check_host(host)
        pid = self.nodes[host].shell.pid
        rx = tx = 0
        for line in Path(f"/proc/{pid}/net/dev").read_text().splitlines()[2:]:
            name, data = line.split(":", 1)
            if name.strip() == "lo":
                continue
            f = data.split()
            rx += int(f[0])
            tx += int(f[8])
        return {"rx_bytes": rx, "tx_bytes": tx}

    def port_tx_bytes(self, dev: str) -> int:
        """tx_bytes of a root-namespace device (the shaped switch port): "wire" bytes."""
        return int(Path(f"/sys/class/net/{dev}/statistics/tx_bytes").read_text())

    def shaped_ports(self) -> list[dict]:
        """One entry per shaped egress: link, device, direction, namespace (None = root)."""
        return [{"link": f"{self.topology.links[p['k']].a}-{self.topology.links[p['k']].b}",
                 "dev": p["dev"], "direction": p["direction"],
                 "root_ns": self._ns_of(p["node"]) is None, "trace_index":
                 self.topology.links[p["k"]].trace} for p in self.ports]

    def applied_link_params(self) -> dict:
        o = self.options
        links = []
        for p in self.ports:
            link = self.topology.links[p["k"]]
            proc, errf = self._pipes[self._ns_of(p["node"])]
            errs = errf.read_text().strip() if errf.exists() else ""
            idx = [i for i, q in enumerate(self.replay.ports)
                   if q.name == p["dev"]] if self.replay else []
            rep = self.replay.ports[idx[0]] if idx else None
            links.append({
                "link": f"{link.a}-{link.b}", "direction": p["direction"], "dev": p["dev"],
                "trace": p["trace"].name, "trace_mean_mbps": round(p["trace"].mean_mbps(), 4),
                "bin_s": p["schedule"].bin_s, "rate_factor": round(tc.TCP_OVERHEAD_FACTOR, 6)
                if o.compensate_tcp_overhead else 1.0,
                "min_bin_frames": o.min_bin_frames, "replay_bins": len(p["schedule"].offsets_s),
                "zero_capacity": f"one {tc.MTU_FRAME_BYTES}-byte frame per max(bin, "
                                 f"{ZERO_FLOOR_MIN_STEP_S:g} s), never rate 8bit",
                "queue_packets": p["current"].queue_packets, "queue_ms": o.queue_ms,
                "burst_bytes": p["current"].burst_bytes,
                "delay_ms_requested": p["delay_ms"],
                "delay_ms_applied": p["delay_ms"] if self.netem else 0.0,
                "loss_pct_requested": p["loss_pct"],
                "loss_pct_applied": p["loss_pct"] if self.netem else 0.0,
                "replay": rep.lag.summary() if rep else {"changes": 0},
                "tc_errors": errs[-2000:]})
        return {"backend": "mininet", "netem_available": self.netem,
                "offloads_off": list(OFFLOADS), "options": o.to_dict(), "links": links,
                "unshaped_delays": self.delay_notes,
                "replay_error": repr(self.replay.error) if self.replay and self.replay.error
                else None}
