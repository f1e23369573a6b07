"""The one run configuration: typed, validated, built from TOML/JSON plus ``--set`` overrides.

``load_config(path, overrides)`` returns a frozen ``RunConfig``; every error names the file
and the dotted field and says what was expected. ``to_dict`` gives the resolved config that
each run writes to its metadata. ``testbed run`` and ``testbed simulate`` read the same file.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal


class ConfigError(ValueError):
    """Invalid configuration; the message names the file and field."""


@dataclass(frozen=True)
class SessionConfig:
    """duration_s: session length (s). window: videos the scheduler sees (current included).
    max_parallel: concurrent downloads per player. cancel_useless: abort downloads of videos
    already left. decide_interval_s: longest a scheduler waits between decisions."""

    duration_s: float = 60.0
    window: int = 5
    max_parallel: int = 2
    cancel_useless: bool = True
    decide_interval_s: float = 0.5
    initial_throughput_mbps: float = 1.0


@dataclass(frozen=True)
class CatalogConfig:
    """dir: catalog directory (relative paths are relative to the config file); prepared
    when missing with the remaining fields (see ``testbed prepare --help``)."""

    dir: str = "results/catalogs/default"
    count: int = 8
    min_duration_s: float = 10.0
    max_duration_s: float = 40.0
    seed: int = 0
    chunk_s: float = 1.0
    ladder_kbps: tuple[int, ...] = (100, 250, 500, 1000)
    codecs: tuple[str, ...] = ("h264",)
    prompt_ranks: tuple[int, ...] = ()


@dataclass(frozen=True)
class FeedConfig:
    """length: videos in each player's feed (cycling through the catalog).
    swipe: ``synthetic`` | ``challenge`` | ``dashlet`` (real swipe data from the trace dir)."""

    length: int = 30
    swipe: Literal["synthetic", "challenge", "dashlet"] = "synthetic"


@dataclass(frozen=True)
class NetworkConfig:
    """backend: ``auto`` (Mininet when root and available, else user space) | ``mininet`` |
    ``userspace``. topology: registry name or dotted path. traces: trace files (relative to
    the trace directory, or absolute), one per shaped link, reused cyclically; empty means
    the calibrated synthetic generator. trace_offset_s: start offset into each trace.
    compensate_tcp_overhead: scale shaped rates by 1514/1448 so TCP goodput matches the
    trace. queue_packets: queue under each shaped class. delay_ms: one-way delay on shaped
    links; allow_no_delay: run without it where netem is missing (else refuse). loss_pct:
    random loss on shaped links (%); allow_no_loss: run without it where it cannot be
    applied (no netem; the userspace backend), else refuse."""

    backend: Literal["auto", "mininet", "userspace"] = "auto"
    topology: str = "access"
    traces: tuple[str, ...] = ()
    trace_offset_s: float = 0.0
    compensate_tcp_overhead: bool = True
    queue_packets: int = 100
    bin_s: float | None = None
    delay_ms: float = 0.0
    allow_no_delay: bool = False
    loss_pct: float = 0.0
    allow_no_loss: bool = False


@dataclass(frozen=True)
class PlayersConfig:
    """count: players per scheduler run. devices: decode devices of each player.
    device_profile: ``measured`` (decode for real, no hold) or a profile name from
    ``codec.profiles`` that holds each decode to that device's latency.
    decode: ``real`` (PyAV / the generator decode every chunk) or ``profile`` (no pixel
    work, latency from the profile: for scale studies)."""

    count: int = 2
    devices: tuple[str, ...] = ("cpu",)
    device_profile: str = "measured"
    decode: Literal["real", "profile"] = "real"
    sample_interval_s: float = 1.0


@dataclass(frozen=True)
class SchedulerEntry:
    """One scheduler to compare: registry name, its parameters, an optional label."""

    name: str
    params: dict = field(default_factory=dict)
    label: str = ""

    @property
    def display(self) -> str:
        return self.label or self.name


@dataclass(frozen=True)
class SimulatorConfig:
    """``testbed simulate`` only. request_latency_s: time from a request to its first byte
    (s; None: 2 x network.delay_ms, the RTT). queue_bytes: bottleneck queue a new
    download's first byte waits behind (0: none, pure fair sharing; docs/simulator.md).
    decode_scale: multiplies profile decode times."""

    request_latency_s: float | None = None
    queue_bytes: int = 0
    decode_scale: float = 1.0


@dataclass(frozen=True)
class QoEConfig:
    """QoE weights (players.accounting.QoEWeights): mu per stall second; startup per
    startup-wait second (unset: the same as mu, as the challenge charges both; 0 gives
    DESIGN.md's stall-only form); lam per Mbps of switch; download per Mbit (challenge
    score)."""

    mu: float = 1.85
    lam: float = 1.0
    download: float = 0.5
    startup: float | None = None


@dataclass(frozen=True)
class RunConfig:
    """name: run name (used in the run id). seed: swipe and scheduler seed.
    mode: ``serial`` (one scheduler after another on a fresh topology) | ``parallel``
    (side by side on separate links replaying the same trace)."""

    name: str = "run"
    seed: int = 1
    mode: Literal["serial", "parallel"] = "serial"
    session: SessionConfig = SessionConfig()
    catalog: CatalogConfig = CatalogConfig()
    feed: FeedConfig = FeedConfig()
    network: NetworkConfig = NetworkConfig()
    players: PlayersConfig = PlayersConfig()
    schedulers: tuple[SchedulerEntry, ...] = (SchedulerEntry("no-preload"), SchedulerEntry("fixed"))
    qoe: QoEConfig = QoEConfig()
    simulator: SimulatorConfig = SimulatorConfig()
    source: str = ""  # the file it came from (not read from the file)


# ---------------------------------------------------------------------------------------


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table, got {type(value).__name__}")
        return _build(tp, value, where)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{where}: expected one of {list(args)}, got {value!r}")
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], where)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return tuple(_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
    if tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table, got {value!r}")
        return dict(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{where}: unsupported type {_type_name(tp)}")  # pragma: no cover


def _build(cls: type, data: dict, where: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.name != "source"}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{where or 'top level'}: unknown field(s) {unknown}; "
                          f"valid: {sorted(names)}")
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}" if where else k) for k, v in data.items()}
    return cls(**kwargs)


def _check(cfg: RunConfig, where: str) -> None:
    def need(ok: bool, field_: str, what: str) -> None:
        if not ok:
            raise ConfigError(f"{where}: {field_}: {what}")

    s, c, p, n = cfg.session, cfg.catalog, cfg.players, cfg.network
    need(s.duration_s > 0, "session.duration_s", "expected > 0")
    need(s.window >= 1, "session.window", "expected >= 1")
    need(s.max_parallel >= 1, "session.max_parallel", "expected >= 1")
    need(s.decide_interval_s > 0, "session.decide_interval_s", "expected > 0")
    need(c.count >= 1, "catalog.count", "expected >= 1")
    need(0 < c.min_duration_s <= c.max_duration_s, "catalog.min_duration_s",
         "expected 0 < min_duration_s <= max_duration_s")
    need(c.chunk_s > 0, "catalog.chunk_s", "expected > 0")
    need(len(c.ladder_kbps) >= 1 and all(k > 0 for k in c.ladder_kbps), "catalog.ladder_kbps",
         "expected a non-empty list of positive kbps")
    need(set(c.codecs) <= {"h264", "hevc"} and c.codecs, "catalog.codecs",
         "expected a non-empty subset of ['h264', 'hevc']")
    need(cfg.feed.length >= 1, "feed.length", "expected >= 1")
    need(p.count >= 1, "players.count", "expected >= 1")
    need(len(p.devices) >= 1, "players.devices", "expected at least one device")
    need(p.sample_interval_s > 0, "players.sample_interval_s", "expected > 0")
    need(n.queue_packets >= 2, "network.queue_packets", "expected >= 2")
    need(n.delay_ms >= 0, "network.delay_ms", "expected >= 0")
    need(0 <= n.loss_pct < 100, "network.loss_pct", "expected a percentage in [0, 100)")
    need(n.bin_s is None or n.bin_s > 0, "network.bin_s", "expected > 0")
    need(cfg.simulator.request_latency_s is None or cfg.simulator.request_latency_s >= 0,
         "simulator.request_latency_s", "expected >= 0")
    need(cfg.simulator.decode_scale >= 0, "simulator.decode_scale", "expected >= 0")
    need(cfg.simulator.queue_bytes >= 0,
         "simulator.queue_bytes", "expected >= 0")
    for k in ("mu", "lam", "download", "startup"):
        v = getattr(cfg.qoe, k)
        need(v is None or v >= 0, f"qoe.{k}", "expected >= 0")
    need(len(cfg.schedulers) >= 1, "schedulers", "expected at least one [[schedulers]] entry")
    from players.schedulers.base import get_class, make_params

    labels = [e.display for e in cfg.schedulers]
    need(len(set(labels)) == len(labels), "schedulers",
         f"labels must be unique (got {labels}); set label = ... to tell them apart")
    for i, e in enumerate(cfg.schedulers):
        try:
            make_params(get_class(e.name), e.params)
        except (KeyError, ValueError, TypeError) as exc:
            raise ConfigError(f"{where}: schedulers[{i}]: {exc.args[0]}") from None


def parse_override(text: str) -> tuple[str, Any]:
    """``section.field=value`` with a TOML value (bare words are strings)."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected section.field=value")
    key, raw = text.split("=", 1)
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key.strip(), value


def _apply_override(data: dict, key: str, value: Any) -> None:
    parts = key.split(".")
    node = data
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {key}: {p} is not a table")
    node[parts[-1]] = value


def config_from_dict(data: dict, where: str = "<config>", overrides: list[str] = ()) -> RunConfig:
    data = json.loads(json.dumps(data))  # deep copy, and tuples become lists
    for text in overrides:
        _apply_override(data, *parse_override(text))
    try:
        cfg = _build(RunConfig, data, "")
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    except TypeError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    _check(cfg, where)
    return dataclasses.replace(cfg, source=where)


def load_config(path: str | Path, overrides: list[str] = ()) -> RunConfig:
    """Read a TOML or JSON config and apply ``--set`` overrides."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        kind = "JSON" if path.suffix == ".json" else "TOML"
        raise ConfigError(f"{path}: not valid {kind}: {exc}") from None
    return config_from_dict(data, str(path), overrides)


def to_dict(cfg: RunConfig) -> dict:
    """The resolved config as plain data (what metadata.json records)."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def resolve_path(cfg: RunConfig, path: str) -> Path:
    """A path from the config: absolute as is, else relative to the config file's folder
    (the current directory for configs built in code)."""
    p = Path(path)
    if p.is_absolute() or not cfg.source or cfg.source.startswith("<"):
        return p
    return Path(cfg.source).resolve().parent / p
