"""Tables and plots of finished runs; reads only files in run directories (testbed.results).

``compare_rows(runs)``: per (run, scheduler) the mean and spread of the summary fields.
``format_table(rows)``: that as aligned text. ``plot_run(rd)`` / ``plot_compare(runs, out)``:
stall-vs-waste scatter, QoE bars with spread, CDFs of stall time, and one player's timeline
(link capacity, throughput, buffer per video, stalls, swipes) per scheduler.
"""

from __future__ import annotations

import csv
import math
import statistics
from collections.abc import Iterable, Sequence
from pathlib import Path

from testbed.results import RunDir

# (summary field, column title, scale): the table's columns; bytes shown in MB.
TABLE_FIELDS = (
    ("stall_s", "stall_s", 1.0),
    ("stall_count", "stalls", 1.0),
    ("startup_s_mean", "startup_s", 1.0),
    ("bytes_downloaded", "down_MB", 1e-6),
    ("bytes_wasted", "waste_MB", 1e-6),
    ("waste_ratio", "waste_%", 100.0),
    ("quality_mbps_mean", "q_mbps", 1.0),
    ("qoe", "qoe", 1.0),
    ("challenge_score", "score", 1.0),
    ("cpu_s", "cpu_s", 1.0),
)


def _finite(xs: Iterable) -> list[float]:
    out = []
    for x in xs:
        try:
            v = float(x)
        except (TypeError, ValueError):
            continue
        if math.isfinite(v):
            out.append(v)
    return out


def mean_sd(xs: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value; NaN for none)."""
    xs = _finite(xs)
    if not xs:
        return float("nan"), float("nan")
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def _group(runs: Sequence[RunDir]) -> list[tuple[str, str, list[dict]]]:
    """[(run_id, scheduler, rows)] in run order, then the run's scheduler order."""
    out = []
    for rd in runs:
        rows = rd.summary_rows()
        order = list(dict.fromkeys([*rd.labels(), *(r["scheduler"] for r in rows)]))
        for lab in order:
            rs = [r for r in rows if r["scheduler"] == lab]
            if rs:
                out.append((rd.run_id, lab, rs))
    return out


def compare_rows(runs: Sequence[RunDir]) -> list[dict]:
    """Per (run, scheduler): players, and ``<field>_mean`` / ``<field>_sd`` per table field."""
    out = []
    for run_id, lab, rs in _group(runs):
        row = {"run_id": run_id, "scheduler": lab, "players": len(rs)}
        for f, _, _ in TABLE_FIELDS:
            m, s = mean_sd([r.get(f) for r in rs])
            row[f"{f}_mean"], row[f"{f}_sd"] = m, s
        out.append(row)
    return out


def _cell(m: float, s: float, scale: float) -> str:
    if math.isnan(m):
        return "-"
    m, s = m * scale, s * scale
    digits = 0 if abs(m) >= 100 else (1 if abs(m) >= 10 else 2)
    return f"{m:.{digits}f}±{s:.{digits}f}"


def format_table(rows: Sequence[dict], with_run: bool = False) -> str:
    """Mean±sd per scheduler across its players, as aligned plain text."""
    head = (["run"] if with_run else []) + ["scheduler", "n"] + [t for _, t, _ in TABLE_FIELDS]
    body = []
    for r in rows:
        cells = ([r["run_id"]] if with_run else []) + [r["scheduler"], str(r["players"])]
        cells += [_cell(r[f"{f}_mean"], r[f"{f}_sd"], sc) for f, _, sc in TABLE_FIELDS]
        body.append(cells)
    widths = [max(len(x) for x in col) for col in zip(head, *body)]
    lines = ["  ".join(h.ljust(w) if i < 2 else h.rjust(w) for i, (h, w) in
                       enumerate(zip(head, widths)))]
    for cells in body:
        lines.append("  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in
                               enumerate(zip(cells, widths))))
    return "\n".join(lines)


def write_table_csv(rows: Sequence[dict], path: Path) -> Path:
    keys = list(rows[0]) if rows else ["run_id", "scheduler", "players"]
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    return path


# -------------------------------------------------------------------------- plot data


def stall_durations(events: Iterable[dict]) -> list[float]:
    return [float(e["stall_s"]) for e in events if e.get("event") == "stall_end"]


def timeline_data(events: list[dict], chunk_s: float, bin_s: float = 1.0) -> dict:
    """From one event log: throughput per bin (Mbps, each download's bytes spread evenly
    over its duration), buffer per feed position over time (downloaded minus played content
    seconds, stepping at events), stall spans, swipe times."""
    end_s = max([float(e["t_s"]) for e in events] + [0.0])
    nb = max(1, int(math.ceil(end_s / bin_s)))
    bits = [0.0] * nb
    for e in events:
        if e.get("event") not in ("download_done", "download_cancel"):
            continue
        b = float(e.get("bytes", 0)) * 8
        t1 = float(e["t_s"])
        t0 = t1 - float(e.get("duration_s", 0.0) or 0.0)
        if e.get("event") == "download_cancel" or t1 <= t0:
            i = min(nb - 1, int(t1 / bin_s))
            bits[i] += b
            continue
        rate = b / (t1 - t0)
        i = int(t0 / bin_s)
        while i < nb and i * bin_s < t1:
            lo, hi = max(t0, i * bin_s), min(t1, (i + 1) * bin_s)
            bits[i] += rate * max(0.0, hi - lo)
            i += 1
    tput = ([(i + 0.5) * bin_s for i in range(nb)], [x / bin_s / 1e6 for x in bits])

    buf: dict[int, tuple[list[float], list[float]]] = {}
    level: dict[int, float] = {}

    def step(pos: int, t: float, delta: float) -> None:
        ts, vs = buf.setdefault(pos, ([0.0], [0.0]))
        level[pos] = max(0.0, level.get(pos, 0.0) + delta)
        if t - ts[-1] < 0.05:  # events (nearly) at one instant: draw only where they end
            vs[-1] = level[pos]
        else:
            ts.append(t)
            vs.append(level[pos])

    stalls, swipes, open_stall = [], [], None
    for e in events:
        kind, t = e.get("event"), float(e["t_s"])
        if kind == "download_done":
            step(int(e["position"]), t, chunk_s)
        elif kind == "chunk_played":
            step(int(e["position"]), t, -float(e.get("played_s", chunk_s)))
        elif kind == "swipe":
            swipes.append(t)
            pos = int(e["position"])
            if level.get(pos, 0.0) > 0:
                step(pos, t, -level[pos])  # what is left of a swiped video is never played
        elif kind == "stall_start":
            open_stall = t
        elif kind == "stall_end":
            stalls.append((t - float(e["stall_s"]), t))
            open_stall = None
    if open_stall is not None:
        stalls.append((open_stall, end_s))
    for ts, vs in buf.values():
        ts.append(end_s)
        vs.append(vs[-1])
    return {"throughput": tput, "buffer": buf, "stalls": stalls, "swipes": swipes,
            "end_s": end_s}


# -------------------------------------------------------------------------- plots


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _colors(n: int) -> list:
    plt = _plt()
    cmap = plt.get_cmap("tab10")
    return [cmap(i % 10) for i in range(n)]


def _series_name(run_id: str, lab: str, multi: bool) -> str:
    return f"{lab} ({run_id})" if multi else lab


def plot_stall_vs_waste(groups, out: Path, multi: bool) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    for (run_id, lab, rs), c in zip(groups, _colors(len(groups))):
        xs = [float(r["bytes_wasted"]) / 1e6 for r in rs]
        ys = [float(r["stall_s"]) for r in rs]
        ax.scatter(xs, ys, color=c, alpha=0.45, s=28, edgecolors="none")
        (mx, sx), (my, sy) = mean_sd(xs), mean_sd(ys)
        ax.errorbar([mx], [my], xerr=[sx], yerr=[sy], fmt="o", color=c, ms=9, capsize=4,
                    mec="black", label=f"{_series_name(run_id, lab, multi)} (n={len(rs)})")
    ax.set_xlabel("wasted bytes per player (MB)")
    ax.set_ylabel("stall time per player (s)")
    ax.set_title("Stall vs waste (dots: players; big: mean ± sd)\nbetter: towards the origin")
    # Start just below zero so players with no stall or no waste stay visible.
    top = max(ax.get_ylim()[1], 0.1)
    right = max(ax.get_xlim()[1], 0.1)
    ax.set_ylim(-0.04 * top, top)
    ax.set_xlim(-0.03 * right, right)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    path = out / "stall_vs_waste.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_qoe_bars(groups, out: Path, multi: bool) -> Path:
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(max(6.4, 1.6 * len(groups) + 3), 4.4))
    names = [_series_name(r, lab, multi) for r, lab, _ in groups]
    colors = _colors(len(groups))
    for ax, field, title in ((axes[0], "qoe", "QoE per player"),
                             (axes[1], "challenge_score", "challenge score (QoE - 0.5·Mbit)")):
        for k, ((_, _, rs), c) in enumerate(zip(groups, colors)):
            vals = _finite(r.get(field) for r in rs)
            m, s = mean_sd(vals)
            ax.bar(k, m if math.isfinite(m) else 0, yerr=s if math.isfinite(s) else 0,
                   color=c, alpha=0.75, capsize=5, edgecolor="black", linewidth=0.6)
            ax.scatter([k] * len(vals), vals, color="black", s=10, zorder=3)
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_xticks(range(len(groups)))
        ax.set_xticklabels(names, rotation=20, ha="right", fontsize=8)
        ax.set_title(f"{title}\nbar: mean ± sd; dots: players", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path = out / "qoe.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_stall_cdf(groups, runs_by_id: dict, out: Path, multi: bool) -> Path:
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    for (run_id, lab, rs), c in zip(groups, _colors(len(groups))):
        name = _series_name(run_id, lab, multi)
        per_player = sorted(_finite(r["stall_s"] for r in rs))
        rd = runs_by_id[run_id]
        events = []
        for i in rd.players(lab):
            events += stall_durations(rd.events(lab, i))
        for ax, xs in ((axes[0], per_player), (axes[1], sorted(events))):
            if not xs:
                ax.plot([0, 0], [0, 1], color=c, label=f"{name} (none)")
                continue
            ys = [(k + 1) / len(xs) for k in range(len(xs))]
            ax.step([0.0] + xs, [0.0] + ys, where="post", color=c, label=f"{name} (n={len(xs)})")
    axes[0].set_xlabel("total stall time of a player (s)")
    axes[1].set_xlabel("duration of one stall (s)")
    axes[0].set_title("CDF over players")
    axes[1].set_title("CDF over stall events")
    for ax in axes:
        ax.set_ylabel("fraction")
        ax.set_ylim(0, 1.02)
        ax.set_xlim(left=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    path = out / "stall_cdf.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_timeline(rd: RunDir, out: Path, player: int = 0, labels: Sequence[str] | None = None,
                  name: str = "timeline.png") -> Path | None:
    """One player's session per scheduler: capacity + throughput (top), buffer per video
    (bottom), stalls shaded red, swipes as dotted lines."""
    plt = _plt()
    labels = [lab for lab in (labels or rd.labels()) if player in rd.players(lab)]
    if not labels:
        return None
    chunk_s = float(((rd.metadata().get("config") or {}).get("catalog") or {}).get("chunk_s", 1.0))
    fig, axes = plt.subplots(2, len(labels), figsize=(5.2 * len(labels), 6.4), squeeze=False,
                             sharex="col", gridspec_kw={"height_ratios": [1, 1.2]})
    for col, lab in enumerate(labels):
        events = rd.events(lab, player)
        d = timeline_data(events, chunk_s)
        top, bot = axes[0][col], axes[1][col]
        info = rd.player_info(lab, player)
        cap = rd.link_trace(int(info.get("link", player)))
        if cap is not None:
            ts, rs = cap
            # Trace time 0 is the replay start; session time 0 the player's first video.
            # Shift when the player logged its wall clock at session start.
            start = next((e for e in events if e.get("event") == "session_start"), {})
            if start.get("wall_s") is not None and info.get("replay_wall_s") is not None:
                shift = float(info["replay_wall_s"]) - float(start["wall_s"])
                ts = [t + shift for t in ts]
            keep = [k for k, t in enumerate(ts) if t <= d["end_s"]]
            if keep:
                last = keep[-1]
                top.step(ts[:last + 1] + [d["end_s"]], rs[:last + 1] + [rs[last]], where="post",
                         color="gray", linewidth=1.2, label="link capacity")
        top.plot(*d["throughput"], color="tab:blue", linewidth=1.2, label="throughput (1-s bins)")
        top.set_ylabel("Mbps")
        top.set_ylim(bottom=0)
        top.set_title(f"{lab}: player {player}" + (f", trace {info['trace']}" if info.get("trace")
                                                   else ""), fontsize=10)
        colors = _colors(10)
        for pos in sorted(d["buffer"]):
            ts, vs = d["buffer"][pos]
            bot.step(ts, vs, where="post", color=colors[pos % 10], linewidth=1.1,
                     label=f"video {pos}" if pos < 8 else None)
        bot.set_ylabel("buffered content (s)")
        bot.set_xlabel("session time (s)")
        bot.set_ylim(bottom=0)
        for ax in (top, bot):
            for k, (a, b) in enumerate(d["stalls"]):
                ax.axvspan(a, max(b, a + 0.05), color="red", alpha=0.25,
                           label="stall" if k == 0 else None)
            for k, t in enumerate(d["swipes"]):
                ax.axvline(t, color="black", linestyle=":", linewidth=0.9,
                           label="swipe" if k == 0 else None)
            ax.grid(alpha=0.3)
        top.legend(fontsize=7, loc="upper right")
        bot.legend(fontsize=7, loc="upper right", ncol=2)
    fig.tight_layout()
    path = out / name
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_compare(runs: Sequence[RunDir], out: Path, player: int = 0) -> list[Path]:
    """All comparison plots of ``runs`` into ``out``; returns the files written."""
    out.mkdir(parents=True, exist_ok=True)
    groups = _group(runs)
    if not groups:
        return []
    multi = len(runs) > 1
    by_id = {rd.run_id: rd for rd in runs}
    paths = [plot_stall_vs_waste(groups, out, multi), plot_qoe_bars(groups, out, multi),
             plot_stall_cdf(groups, by_id, out, multi)]
    for rd in runs:
        p = plot_timeline(rd, out, player, name="timeline.png" if not multi else
                          f"timeline-{rd.run_id}.png")
        if p is not None:
            paths.append(p)
    return paths


def plot_run(rd: RunDir) -> list[Path]:
    """The plots of one run into its plots/ folder."""
    return plot_compare([rd], rd.plots_dir)
