"""The clock-free session model: playback, stalls, startup, swipes and byte bookkeeping."""

import pytest

from players.schedulers.base import Download, IllegalAction, RepInfo, Wait, check_action
from players.session import SessionModel, VideoSpec


def spec(vid="v0", n=4, chunk_s=1.0, nbytes=1000, q=0.5):
    rep = RepInfo("pixel/h264/500", "pixel", 500.0, (nbytes,) * n, (q,) * n, {"cpu": 0.01})
    return VideoSpec(vid, n * chunk_s, chunk_s, n, (rep,), (0.0,) * n + (1.0,))


def run_model(feed, watch, **kw):
    events = []
    m = SessionModel(feed, watch, emit=events.append, **kw)
    return m, events


def fetch(m, pos, chunk, t):
    """Download and decode one chunk instantly at time t."""
    m.advance(t)
    m.start_download(pos, chunk, "pixel/h264/500")
    dev = m.finish_download(pos, chunk)
    assert m.next_decode(dev) == (pos, chunk, "pixel/h264/500")
    m.decode_started(dev, 0.0)
    m.decode_done(dev, 0.0, 30)


def kinds(events, name):
    return [e for e in events if e["event"] == name]


def test_startup_then_play_then_stall_then_swipe():
    m, ev = run_model([spec(), spec("v1")], [3.0, 4.0])
    fetch(m, 0, 0, 0.5)  # startup 0.5 s
    fetch(m, 0, 1, 0.7)
    m.advance(3.0)  # plays 0.5..2.5, stalls from 2.5
    assert kinds(ev, "play_start")[0]["startup_s"] == pytest.approx(0.5)
    assert kinds(ev, "stall_start")[0]["t_s"] == pytest.approx(2.5)
    fetch(m, 0, 2, 4.0)  # stall 1.5 s, then plays to watch time 3.0 at t=5.0
    m.advance(5.5)
    stall_end = kinds(ev, "stall_end")[0]
    assert stall_end["stall_s"] == pytest.approx(1.5)
    swipe = kinds(ev, "swipe")[0]
    assert swipe["t_s"] == pytest.approx(5.0) and swipe["watch_s"] == pytest.approx(3.0)
    assert m.current == 1 and m.mode == "startup"
    played = kinds(ev, "chunk_played")
    assert [e["chunk"] for e in played] == [0, 1, 2]
    assert sum(e["played_s"] for e in played) == pytest.approx(3.0)


def test_swipe_at_boundary_with_missing_chunk_is_not_a_stall():
    m, ev = run_model([spec(), spec("v1")], [2.0, 4.0])
    fetch(m, 0, 0, 0.0)
    fetch(m, 0, 1, 0.0)
    m.advance(2.5)
    assert not kinds(ev, "stall_start")
    assert kinds(ev, "swipe")[0]["t_s"] == pytest.approx(2.0)


def test_session_duration_ends_and_cancels_in_flight():
    m, ev = run_model([spec(n=10)], [10.0], session_s=3.0)
    fetch(m, 0, 0, 0.0)
    m.start_download(0, 1, "pixel/h264/500")
    m.download_progress(0, 1, 400)
    m.advance(5.0)
    assert m.ended and m.end_reason == "duration"
    assert kinds(ev, "download_cancel")[0]["bytes"] == 400
    stall_end = kinds(ev, "stall_end")[-1]
    assert stall_end["truncated"] and stall_end["stall_s"] == pytest.approx(2.0)


def test_feed_end_and_observation_window():
    feed = [spec(f"v{i}", n=2) for i in range(3)]
    m, ev = run_model(feed, [2.0, 2.0, 2.0], window=2)
    obs = m.observation()
    assert [v.position for v in obs.videos] == [0, 1]
    for pos in range(3):
        fetch(m, pos, 0, m.t_s)
        fetch(m, pos, 1, m.t_s)
    m.advance(10.0)
    assert m.ended and m.end_reason == "feed_end"
    assert m.t_s == pytest.approx(6.0)


def test_check_action_rejects_illegal_moves():
    m, _ = run_model([spec(), spec("v1")], [4.0, 4.0], max_parallel=1)
    obs = m.observation()
    check_action(obs, Download(1, 3, "pixel/h264/500"))
    check_action(obs, Wait(0.5))
    for bad in [Download(5, 0, "pixel/h264/500"), Download(0, 9, "pixel/h264/500"),
                Download(0, 0, "pixel/h264/9999"), Wait(0), Wait(float("inf")),
                Download(0, 0, "pixel/h264/500", device="npu")]:
        with pytest.raises(IllegalAction):
            check_action(obs, bad)
    m.start_download(0, 0, "pixel/h264/500")
    with pytest.raises(IllegalAction):
        check_action(m.observation(), Download(0, 1, "pixel/h264/500"))
