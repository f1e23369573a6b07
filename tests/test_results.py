"""The results layout: write a hand-made run, read it back, summarise it, refuse bad input."""

import json
import math

import pytest

from players.accounting import SUMMARY_FIELDS
from testbed.results import (
    SUMMARY_COLUMNS,
    ResultsError,
    RunDir,
    new_run_id,
    open_run,
    resource_totals,
)


def _session(stall_s: float, wasted_bytes: int) -> list[dict]:
    """One video of two 1-s chunks of 1 Mbps: startup 0.5 s, one stall, a cancelled download."""
    ev = [
        {"t_s": 0.0, "event": "session_start", "n_videos": 1, "session_s": 10.0},
        {"t_s": 0.0, "event": "video_start", "position": 0, "video": "v0"},
        {"t_s": 0.5, "event": "download_done", "position": 0, "video": "v0", "chunk": 0,
         "representation": "pixel/h264/1000", "bytes": 125000, "duration_s": 0.5},
        {"t_s": 0.5, "event": "play_start", "position": 0, "startup_s": 0.5},
        {"t_s": 1.5, "event": "chunk_played", "position": 0, "video": "v0", "chunk": 0,
         "representation": "pixel/h264/1000", "played_s": 1.0, "chunk_s": 1.0,
         "bytes": 125000, "quality_mbps": 1.0},
        {"t_s": 1.5, "event": "stall_start", "position": 0, "playhead_s": 1.0},
        {"t_s": 1.5 + stall_s, "event": "stall_end", "position": 0, "playhead_s": 1.0,
         "stall_s": stall_s, "truncated": False},
        {"t_s": 1.6 + stall_s, "event": "download_cancel", "position": 1, "video": "v1",
         "chunk": 0, "representation": "pixel/h264/1000", "bytes": wasted_bytes,
         "reason": "useless"},
        {"t_s": 2.0 + stall_s, "event": "session_end", "reason": "duration", "startup_open_s": 0.0},
    ]
    return ev


def _write_run(root, stalls=(1.0, 2.0), labels=("a", "b")):
    meta = {"schedulers": list(labels), "backend": "userspace",
            "config": {"qoe": {"mu": 2.0, "lam": 1.0, "download": 0.5}},
            "players": [{"scheduler": lab, "player": i, "host": f"h{i}", "trace": f"t{i}"}
                        for lab in labels for i in range(len(stalls))]}
    rd = RunDir.create(root, "r1", meta)
    for lab in labels:
        for i, st in enumerate(stalls):
            with open(rd.events_path(lab, i), "w") as fh:
                fh.writelines(json.dumps(e) + "\n" for e in _session(st, 1000 * (i + 1)))
            with open(rd.resources_path(lab, i), "w") as fh:
                fh.writelines(json.dumps({"t_s": k, "cpu_s": 0.1 * k, "rss_mb": 50 + k}) + "\n"
                              for k in range(3))
    return rd


def test_roundtrip_summary(tmp_path):
    rd = _write_run(tmp_path)
    assert rd.metadata()["complete"] is False
    rd.write_summary()
    rd.mark_complete()
    back = open_run(rd.path)
    assert back.metadata()["complete"] is True
    assert back.labels() == ["a", "b"]
    assert back.players("a") == [0, 1]
    rows = back.summary_rows()
    assert len(rows) == 4
    assert set(SUMMARY_COLUMNS) <= set(rows[0])
    r0 = [r for r in rows if r["scheduler"] == "a" and r["player"] == 1][0]
    assert r0["trace"] == "t1" and r0["backend"] == "userspace"
    assert r0["stall_s"] == pytest.approx(2.0)
    assert r0["stall_count"] == 1
    assert r0["bytes_downloaded"] == 125000 + 2000
    assert r0["bytes_wasted"] == 2000
    # QoE with the run's weights: 1 Mbps for 1 s - mu * (stall 2 + startup 0.5)
    assert r0["qoe"] == pytest.approx(1.0 - 2.0 * 2.5)
    assert r0["cpu_s"] == pytest.approx(0.2) and r0["peak_rss_mb"] == pytest.approx(52)
    assert all(isinstance(r[f], (int, float)) for r in rows for f in SUMMARY_FIELDS)


def test_refuses_existing_run_and_bad_label(tmp_path):
    _write_run(tmp_path)
    with pytest.raises(ResultsError, match="already exists"):
        RunDir.create(tmp_path, "r1", {})
    rd = RunDir.create(tmp_path, "r2", {})
    with pytest.raises(ResultsError, match="label"):
        rd.events_path("../x", 0)


def test_open_run_errors(tmp_path):
    with pytest.raises(ResultsError, match="not a directory"):
        open_run(tmp_path / "nope")
    (tmp_path / "d").mkdir()
    with pytest.raises(ResultsError, match="no metadata.json"):
        open_run(tmp_path / "d")
    (tmp_path / "d" / "metadata.json").write_text("{broken")
    with pytest.raises(ResultsError, match="metadata.json: not valid JSON"):
        open_run(tmp_path / "d")


def test_torn_last_line_is_tolerated_but_corruption_is_not(tmp_path):
    rd = _write_run(tmp_path, stalls=(1.0,), labels=("a",))
    p = rd.events_path("a", 0)
    with open(p, "a") as fh:
        fh.write('{"t_s": 9, "event": "sta')  # a player killed mid-write
    assert len(rd.events("a", 0)) == len(_session(1.0, 1000))
    lines = p.read_text().splitlines()
    lines.insert(2, "garbage")
    p.write_text("\n".join(lines) + "\n")
    with pytest.raises(ResultsError, match=r"player0.jsonl:3"):
        rd.events("a", 0)


def test_resource_totals_and_missing():
    t = resource_totals([{"t_s": 0, "cpu_s": 1.0, "rss_mb": 2.0},
                         {"t_s": 1, "cpu_s": 3.0, "rss_mb": 1.5}])
    assert t == {"cpu_s": 3.0, "peak_rss_mb": 2.0}
    t = resource_totals([])
    assert math.isnan(t["cpu_s"]) and math.isnan(t["peak_rss_mb"])


def test_run_ids_unique_and_safe():
    ids = {new_run_id("my run/x", now=0) for _ in range(20)}
    assert len(ids) > 1
    assert all("/" not in i and " " not in i for i in ids)
