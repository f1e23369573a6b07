"""`testbed compare` and the plots, on run directories made by hand.

The event logs come from the real players.session.SessionModel driven by a tiny
deterministic loop (one download at a time over a sinusoidal link, instant decode), so they
have the exact schema and the arithmetic of a real session.
"""

import json
import math

import pytest

from players.schedulers.base import RepInfo
from players.session import SessionModel, VideoSpec
from testbed.cli import main
from testbed.report import compare_rows, format_table, mean_sd, plot_compare, timeline_data
from testbed.results import RunDir, open_run

CHUNK_BYTES = 62_500  # 500 kbps x 1 s


def _feed(n=12):
    rep = RepInfo("pixel/h264/500", "pixel", 500.0, (CHUNK_BYTES,) * 8, (0.5,) * 8, {"cpu": 0.0})
    return [VideoSpec(f"v{i}", 8.0, 1.0, 8, (rep,), (0.1,) * 8 + (0.2,)) for i in range(n)]


def _rate_bps(t_s, scale):
    return scale * (0.6e6 + 0.45e6 * math.sin(t_s / 4.0))


def drive(preload: int, scale: float, seed: int, session_s: float = 30.0) -> list[dict]:
    """Current video in order, then the first ``preload`` chunks of the next two videos."""
    feed = _feed()
    watch = [2.0 + ((seed * 7 + 3 * i) % 6) for i in range(len(feed))]
    events: list[dict] = []
    m = SessionModel(feed, watch, emit=events.append, session_s=session_s, window=3)
    t = 0.0
    while not m.ended:
        m.advance(t)
        if m.ended:
            break
        obs = m.observation()
        pick = None
        for v in obs.videos:
            limit = v.n_chunks if v.position == obs.current else preload
            first = int(obs.playhead_s // v.chunk_s) if v.position == obs.current else 0
            todo = [c for c in range(first, limit) if c not in v.downloaded]
            if todo:
                pick = (v.position, todo[0])
                break
        if pick is None:
            t = min(t + 0.5, m.next_change_s())
            continue
        m.start_download(pick[0], pick[1], "pixel/h264/500")
        t += CHUNK_BYTES * 8 / _rate_bps(t, scale)
        m.advance(t)
        if m.ended:
            break
        if pick[0] < m.current:
            m.cancel_download(*pick, CHUNK_BYTES // 2, "useless")
            continue
        dev = m.finish_download(*pick)
        if m.next_decode(dev):
            m.decode_started(dev, 0.0)
            m.decode_done(dev, 0.0, 30)
    return events


def make_run(root, run_id="r", labels=(("none", 0), ("pre2", 2)), players=3):
    meta = {"schedulers": [lab for lab, _ in labels], "backend": "userspace",
            "config": {"qoe": {"mu": 1.85, "lam": 1.0, "download": 0.5},
                       "catalog": {"chunk_s": 1.0}},
            "players": [{"scheduler": lab, "player": i, "link": i, "trace": f"sine{i}"}
                        for lab, _ in labels for i in range(players)]}
    rd = RunDir.create(root, run_id, meta)
    for i in range(players):
        ts = [k * 0.5 for k in range(80)]
        rd.write_link_trace(i, ts, [_rate_bps(t, 1.0 + 0.2 * i) / 1e6 for t in ts], 40.0)
    for lab, pre in labels:
        for i in range(players):
            with open(rd.events_path(lab, i), "w") as fh:
                fh.writelines(json.dumps(e) + "\n" for e in drive(pre, 1.0 + 0.2 * i, seed=i))
    rd.write_summary()
    rd.mark_complete()
    return rd


def test_compare_rows_mean_and_spread(tmp_path):
    rd = make_run(tmp_path)
    rows = compare_rows([rd])
    assert [r["scheduler"] for r in rows] == ["none", "pre2"]
    for r in rows:
        per = [x for x in rd.summary_rows() if x["scheduler"] == r["scheduler"]]
        m, s = mean_sd([x["stall_s"] for x in per])
        assert r["stall_s_mean"] == pytest.approx(m) and r["stall_s_sd"] == pytest.approx(s)
        assert r["players"] == 3
    # preloading wastes bytes the no-preload policy never fetches
    waste = {r["scheduler"]: r["bytes_wasted_mean"] for r in rows}
    assert waste["pre2"] > waste["none"]
    text = format_table(rows)
    assert "pre2" in text and "±" in text and "waste_MB" in text


def test_timeline_data_buffers_and_throughput(tmp_path):
    events = drive(2, 1.0, seed=0)
    d = timeline_data(events, 1.0)
    ts, mbps = d["throughput"]
    total_mbit = sum(x * 1.0 for x in mbps)
    got = sum(e["bytes"] for e in events if e["event"] in ("download_done", "download_cancel"))
    assert total_mbit == pytest.approx(got * 8 / 1e6, rel=1e-6)
    assert len(d["swipes"]) == sum(e["event"] == "swipe" for e in events)
    assert all(v >= 0 for _, vs in d["buffer"].values() for v in vs)


def test_plots_written(tmp_path):
    rd = make_run(tmp_path)
    paths = plot_compare([rd], rd.plots_dir)
    names = sorted(p.name for p in paths)
    assert names == ["qoe.png", "stall_cdf.png", "stall_vs_waste.png", "timeline.png"]
    for p in paths:
        assert p.stat().st_size > 10_000
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_compare_cli_two_runs(tmp_path, capsys):
    a = make_run(tmp_path, "ra")
    b = make_run(tmp_path, "rb", labels=(("pre4", 4),), players=2)
    rc = main(["compare", str(a.path), str(b.path), "--out", str(tmp_path / "cmp"),
               "--csv", str(tmp_path / "t.csv")])
    out = capsys.readouterr().out
    assert rc == 0
    assert "ra" in out and "rb" in out and "pre4" in out
    assert (tmp_path / "cmp" / "stall_vs_waste.png").exists()
    assert (tmp_path / "cmp" / "timeline-rb.png").exists()
    assert len((tmp_path / "t.csv").read_text().splitlines()) == 4


def test_compare_reads_logs_when_summary_missing(tmp_path, capsys):
    rd = make_run(tmp_path)
    before = compare_rows([open_run(rd.path)])
    (rd.path / "summary.csv").unlink()
    after = compare_rows([open_run(rd.path)])
    for x, y in zip(before, after):
        assert x["qoe_mean"] == pytest.approx(y["qoe_mean"])


def test_compare_cli_errors(tmp_path, capsys):
    assert main(["compare", str(tmp_path / "missing")]) == 2
    assert "not a directory" in capsys.readouterr().err
    rd = RunDir.create(tmp_path, "empty", {"schedulers": []})
    assert main(["compare", str(rd.path)]) == 2
    assert "no player results" in capsys.readouterr().err
