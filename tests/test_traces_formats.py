"""Trace loaders on the real public files and on broken files (each error case)."""

import json

import numpy as np
import pytest

from traces.formats import FORMATS, detect, load, load_mahimahi_ms
from traces.paths import list_traces, trace_dir
from traces.trace import TraceError

ROOT = trace_dir()
needs_traces = pytest.mark.skipif(ROOT is None, reason="no trace directory (shared/traces)")


# -- real files --------------------------------------------------------------------------
# (dataset folder, detected format, per-file time-weighted mean range in Mbps)
DATASETS = [
    ("mahimahi", "mahimahi", (0.4, 20)),
    ("fcc", "cooked", (0.1, 3.5)),
    ("hsdpa", "cooked", (0.4, 5)),
    ("oboe", "cooked", (0.2, 6)),
    ("puffer", "cooked", (0.2, 4)),
    ("solis-wifi", "iperf3", (5, 90)),
    ("lumos-4g-abr", "lumos", (0.3, 40)),
    ("ucc-5g", "gnettrack", (1, 150)),
    ("short-video-challenge/network", "challenge", (0.9, 4)),
]


@needs_traces
@pytest.mark.parametrize("dataset,fmt,mean_range", DATASETS)
def test_every_real_file_loads(dataset, fmt, mean_range):
    files = list_traces(dataset)
    for f in files:
        assert detect(f) == fmt, f
        tr = load(f)
        assert tr.meta["format"] == fmt
        assert tr.start_s == 0 and tr.duration_s > 0
        lo, hi = mean_range
        assert lo <= tr.mean_mbps() <= hi, (f, tr.mean_mbps())


@needs_traces
def test_mahimahi_bits_match_packet_count():
    f = ROOT / "mahimahi" / "ATT-LTE-driving.up"
    ms = load_mahimahi_ms(f)
    assert ms[0] == 831  # does not start at 0 (PROVENANCE)
    tr = load(f)
    assert tr.duration_s == pytest.approx(ms[-1] / 1000)
    assert tr.bits_between(0, tr.duration_s) == pytest.approx(len(ms) * 12000)
    # PROVENANCE: mean 0.83 Mbps over 1012 s.
    assert tr.mean_mbps() == pytest.approx(0.83, abs=0.01)
    coarse = load(f, bin_s=1.0)
    assert coarse.bits_between(0, coarse.duration_s) == pytest.approx(len(ms) * 12000)


@needs_traces
def test_challenge_trace_conventions():
    f = ROOT / "short-video-challenge" / "network" / "medium" / "0"
    end = load(f)
    start = load(f, convention="start")
    raw = np.loadtxt(f)
    assert len(end.times_s) == len(start.times_s) == 5880
    assert end.duration_s == start.duration_s == pytest.approx(2940.0)
    # On a regular grid both conventions give the same re-based trace; only the file's
    # clock differs ("end": line 0 covers [-0.5, 0) of it).
    assert end.rate_at(0.75) == start.rate_at(0.75) == pytest.approx(raw[1, 1])
    assert start.meta["t0_file_s"] == 0.0
    assert end.meta["t0_file_s"] == -0.5
    assert end.mean_mbps() == pytest.approx(raw[:, 1].mean())


@needs_traces
def test_hsdpa_end_convention_is_the_time_weighted_mean_in_provenance():
    f = ROOT / "hsdpa" / "norway_bus_1"
    raw = np.loadtxt(f)
    end, start = load(f), load(f, convention="start")
    # Irregular spacing: each value is held over a different interval.
    w_end = np.diff(np.append(end.times_s, end.end_s))
    w_start = np.diff(np.append(start.times_s, start.end_s))
    assert np.allclose(w_end[1:], np.diff(raw[:, 0]))
    assert np.allclose(w_start[:-1], np.diff(raw[:, 0]))
    assert end.mean_mbps() != pytest.approx(start.mean_mbps(), rel=1e-3)
    files = list_traces("hsdpa")
    means = [load(f).mean_mbps() for f in files]
    # PROVENANCE: time-weighted with the "end" convention, per-file median 1.08 Mbps.
    assert np.median(means) == pytest.approx(1.08, abs=0.01)


@needs_traces
def test_gnettrack_groups_seconds_and_fills_ping_seconds():
    f = min((ROOT / "ucc-5g" / "Download" / "Driving").glob("*.csv"))
    tr = load(f)
    kept = load(f, ping="keep")
    assert tr.meta["ping_seconds"] > 0
    assert np.all(np.diff(tr.times_s) >= 1)  # one sample per logged second
    assert tr.mean_mbps() > kept.mean_mbps()  # ping seconds dip; filling raises the mean
    up = load(f, direction="up")
    assert up.mean_mbps() < tr.mean_mbps()


@needs_traces
def test_lumos_durations_are_delivery_times():
    import csv

    f = list_traces("lumos-4g-abr")[0]
    with open(f) as fh:
        rows = list(csv.DictReader(fh))
    dt = sum(float(r["delivery_time"]) for r in rows)
    tr = load(f)
    assert tr.duration_s == pytest.approx(dt)
    kbit = sum(float(r["app_throughput"]) * float(r["delivery_time"]) for r in rows)
    assert tr.bits_between(0, tr.duration_s) == pytest.approx(kbit * 1e3)


@needs_traces
def test_solis_duplicate_times_load():
    tr = load(ROOT / "solis-wifi" / "wifi_cafe_231115-154511.txt")
    assert tr.meta["convention"] == "start"
    assert tr.duration_s == pytest.approx(200, abs=3)


def test_iperf3_json(tmp_path):
    rep = {"intervals": [{"sum": {"start": i, "end": i + 1.0, "bits_per_second": 5e6 + i}}
                         for i in range(10)]}
    p = tmp_path / "run.json"
    p.write_text(json.dumps(rep))
    tr = load(p)
    assert tr.meta["format"] == "iperf3"
    assert tr.duration_s == 10
    assert tr.rate_at(3.5) == pytest.approx(5.000003)


def test_explicit_format_and_unknown(tmp_path):
    p = tmp_path / "t.txt"
    p.write_text("0 1.0\n1 2.0\n2 3.0\n")
    assert load(p, "cooked").mean_mbps() == pytest.approx(2.0)
    assert load(p, "iperf3").mean_mbps() == pytest.approx(2.0)
    with pytest.raises(TraceError, match="unknown format 'nope'"):
        load(p, "nope")
    assert set(FORMATS) >= {"mahimahi", "cooked", "challenge", "iperf3", "gnettrack", "lumos",
                            "puffer", "oboe"}


# -- broken files ------------------------------------------------------------------------
BROKEN = [
    # (file name, content, format, message pattern)
    ("empty.down", "", "mahimahi", r"empty\.down: empty file"),
    ("blank", "\n\n  \n", "cooked", r"blank: empty file"),
    ("mid.down", "1\n2\n\n3\n", "mahimahi", r"mid\.down:3: empty line"),
    ("word.down", "1\n2\nabc\n", "mahimahi", r"word\.down:3: non-numeric field 'abc'"),
    ("frac.down", "1\n2.5\n", "mahimahi", r"frac\.down:2: 2\.5 is not an integer"),
    ("back.down", "1\n5\n3\n", "mahimahi", r"back\.down:3: time goes backwards"),
    ("zero.down", "0\n0\n", "mahimahi", r"zero\.down: zero-length trace"),
    ("neg.down", "1\n-4\n", "mahimahi", r"neg\.down:2: negative timestamp"),
    ("word.txt", "0 1\n1 x2\n", "cooked", r"word\.txt:2: non-numeric field 'x2'"),
    ("cols.txt", "0 1\n1 2 3\n", "cooked", r"cols\.txt:2: 3 fields"),
    ("back.txt", "0 1\n2 1\n1 1\n", "cooked", r"back\.txt:3: time goes backwards"),
    ("neg.txt", "0 1\n1 -2\n", "cooked", r"neg\.txt:2: negative rate -2 Mbps"),
    ("zero.txt", "3 1\n3 2\n", "cooked", r"zero\.txt: zero-length trace"),
    ("one.txt", "0 1\n", "iperf3", r"one\.txt: zero-length trace"),
    ("nan.txt", "0 1\n1 nan\n", "challenge", r"nan\.txt:2: non-finite"),
    ("g.csv", "Timestamp,DL_bitrate\n2020.01.01_10.00.00,5\n2020.01.01_10.00.01,abc\n",
     "gnettrack", r"g\.csv:3: column DL_bitrate: non-numeric 'abc'"),
    ("g2.csv", "Timestamp,DL_bitrate\n2020.01.01_10.00.05,5\n2020.01.01_10.00.01,4\n",
     "gnettrack", r"g2\.csv:3: time goes backwards"),
    ("g3.csv", "Timestamp,DL_bitrate\n2020.01.01_10.00.05,-5\n", "gnettrack",
     r"g3\.csv:2: column DL_bitrate: negative rate"),
    ("g4.csv", "Timestamp,UL_bitrate\n2020.01.01_10.00.05,5\n", "gnettrack",
     r"g4\.csv:1: header lacks column\(s\) DL_bitrate"),
    ("g5.csv", "Timestamp,DL_bitrate\n", "gnettrack", r"g5\.csv: no data rows"),
    ("g6.csv", "Timestamp,DL_bitrate\n10:00,5\n", "gnettrack",
     r"g6\.csv:2: column Timestamp: '10:00' \(expected YYYY"),
    ("l.csv", "app_throughput,delivery_time\n100,0.5\n-3,0.2\n", "lumos",
     r"l\.csv:3: column app_throughput: negative rate"),
    ("l2.csv", "app_throughput,delivery_time\n100,0\n", "lumos", r"l2\.csv: zero-length"),
    ("l3.csv", "app_throughput,delivery_time\n100,0.5\n,\n", "lumos", r"l3\.csv:3: empty line"),
    ("i.json", '{"intervals": [{"sum": {}}]}', "iperf3", r"i\.json: not an iperf3"),
]


@pytest.mark.parametrize("name,content,fmt,pattern", BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_file_errors_name_file_line_and_expectation(tmp_path, name, content, fmt,
                                                           pattern):
    p = tmp_path / name
    p.write_text(content)
    with pytest.raises(TraceError, match=pattern) as info:
        load(p, fmt)
    msg = str(info.value)
    assert str(p) in msg
    assert "expected" in msg


def test_detect_rejects_unknown(tmp_path):
    p = tmp_path / "x"
    p.write_text("a b c\nd e f\n")
    with pytest.raises(TraceError, match=r"x:1: unknown trace format"):
        load(p)


def test_non_utf8_and_missing(tmp_path):
    p = tmp_path / "bin.down"
    p.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(TraceError, match="not a text file"):
        load(p, "mahimahi")
    with pytest.raises(TraceError, match="cannot read"):
        load(tmp_path / "missing.down", "mahimahi")
