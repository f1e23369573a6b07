"""players.accounting on hand-made event logs: the edge cases of stall, startup, waste, QoE."""

import pytest

from players.accounting import QoEWeights, summarize
from players.schedulers.base import RepInfo
from players.session import SessionModel, VideoSpec


def E(t, event, **kw):
    return {"t_s": t, "event": event, **kw}


def played(t, pos, chunk, nbytes, q, played_s=1.0, rep="pixel/h264/500"):
    return E(t, "chunk_played", position=pos, video=f"v{pos}", chunk=chunk,
             representation=rep, played_s=played_s, chunk_s=1.0, bytes=nbytes, quality_mbps=q)


def done(t, pos, chunk, nbytes, rep="pixel/h264/500"):
    return E(t, "download_done", position=pos, video=f"v{pos}", chunk=chunk,
             representation=rep, bytes=nbytes, duration_s=0.1)


def test_simple_session_numbers():
    ev = [E(0, "session_start", n_videos=1, session_s=None), E(0, "video_start", position=0),
          done(0.4, 0, 0, 1000), done(0.8, 0, 1, 2000),
          E(0.5, "play_start", position=0, startup_s=0.5),
          played(1.5, 0, 0, 1000, 0.5), E(1.5, "stall_start", position=0, playhead_s=1.0),
          E(1.75, "stall_end", position=0, playhead_s=1.0, stall_s=0.25, truncated=False),
          played(2.75, 0, 1, 2000, 1.0),
          E(2.75, "swipe", position=0, video="v0", watch_s=2.0),
          E(2.75, "session_end", reason="feed_end", startup_open=False, startup_open_s=0.0)]
    s = summarize(ev)
    assert s["stall_s"] == pytest.approx(0.25) and s["stall_count"] == 1
    assert s["startup_s_mean"] == pytest.approx(0.5)
    assert s["rebuffer_s"] == pytest.approx(0.75)
    assert s["bytes_downloaded"] == 3000 and s["bytes_wasted"] == 0
    # QoE = 0.5 + 1.0 - 1.85 * 0.75 - 1 * |1.0 - 0.5|
    assert s["qoe"] == pytest.approx(1.5 - 1.85 * 0.75 - 0.5)
    assert s["challenge_score"] == pytest.approx(s["qoe"] - 0.5 * 3000 * 8 / 1e6)
    w = summarize(ev, QoEWeights(mu=0.0, lam=0.0, download=0.0))
    assert w["qoe"] == pytest.approx(1.5) and w["challenge_score"] == pytest.approx(1.5)
    # DESIGN.md's stall-only form: startup waits reported, not charged
    only = summarize(ev, QoEWeights(startup=0.0))
    assert only["qoe"] == pytest.approx(1.5 - 1.85 * 0.25 - 0.5)
    assert only["rebuffer_s"] == pytest.approx(0.75)
    both = summarize(ev, QoEWeights(mu=1.0, startup=3.0))
    assert both["qoe"] == pytest.approx(1.5 - 1.0 * 0.25 - 3.0 * 0.5 - 0.5)


def test_swipe_during_a_stall_counts_the_stall_until_the_swipe():
    """The log has a stall_start and then a swipe with no stall_end: the stall lasted until
    the user left (fixed in accounting: before, such a stall counted 0 s)."""
    ev = [E(0, "session_start", n_videos=2, session_s=None), E(0, "video_start", position=0),
          done(0.2, 0, 0, 1000), E(0.3, "play_start", position=0, startup_s=0.3),
          played(1.3, 0, 0, 1000, 0.5), E(1.3, "stall_start", position=0, playhead_s=1.0),
          E(3.3, "swipe", position=0, video="v0", watch_s=1.0),
          E(3.3, "video_start", position=1),
          E(4.0, "session_end", reason="duration", startup_open=True, startup_open_s=0.7)]
    s = summarize(ev)
    assert s["stall_count"] == 1
    assert s["stall_s"] == pytest.approx(2.0)
    assert s["rebuffer_s"] == pytest.approx(2.0 + 0.3 + 0.7)
    assert s["videos_started"] == 2


def test_truncated_stall_at_session_end():
    ev = [E(0, "session_start", n_videos=1, session_s=3), E(0, "video_start", position=0),
          done(0.1, 0, 0, 500), E(0.2, "play_start", position=0, startup_s=0.2),
          played(1.2, 0, 0, 500, 0.5), E(1.2, "stall_start", position=0, playhead_s=1.0),
          E(3.0, "stall_end", position=0, playhead_s=1.0, stall_s=1.8, truncated=True),
          E(3.0, "session_end", reason="duration", startup_open=False, startup_open_s=0.0)]
    s = summarize(ev)
    assert s["stall_s"] == pytest.approx(1.8) and s["cpr"] == pytest.approx(1.0 / 3.0)


def test_cancelled_download_partial_bytes_are_waste():
    ev = [E(0, "session_start", n_videos=2, session_s=2), E(0, "video_start", position=0),
          done(0.1, 0, 0, 1000), E(0.1, "download_start", position=1, video="v1", chunk=0,
                                   representation="pixel/h264/500", bytes_total=4000,
                                   device="cpu"),
          E(0.2, "play_start", position=0, startup_s=0.2), played(1.0, 0, 0, 1000, 0.5, 0.8),
          E(1.0, "swipe", position=0, video="v0", watch_s=0.8),
          E(1.0, "video_start", position=1),
          E(1.0, "download_cancel", position=1, video="v1", chunk=0,
            representation="pixel/h264/500", bytes=1234, reason="swiped"),
          E(2.0, "session_end", reason="duration", startup_open=True, startup_open_s=1.0)]
    s = summarize(ev)
    assert s["bytes_downloaded"] == 2234 and s["bytes_played"] == 1000
    assert s["bytes_wasted"] == 1234
    assert s["waste_ratio"] == pytest.approx(1234 / 2234)
    # a partly played chunk counts all its bytes as played, its quality by the share shown
    assert s["qoe"] == pytest.approx(0.5 * 0.8 - 1.85 * (0.2 + 1.0))


def test_replaced_representation_counts_as_waste():
    ev = [E(0, "session_start", n_videos=1, session_s=None), E(0, "video_start", position=0),
          done(0.1, 0, 0, 800, rep="pixel/h264/250"),
          done(0.3, 0, 0, 3000, rep="pixel/h264/1000"),
          E(0.4, "play_start", position=0, startup_s=0.4),
          played(1.4, 0, 0, 3000, 1.0, rep="pixel/h264/1000"),
          E(1.4, "swipe", position=0, video="v0", watch_s=1.0),
          E(1.4, "session_end", reason="feed_end", startup_open=False, startup_open_s=0.0)]
    s = summarize(ev)
    assert s["bytes_downloaded"] == 3800 and s["bytes_wasted"] == 800


def _spec(n_chunks=3) -> VideoSpec:
    rep = RepInfo("pixel/h264/500", "pixel", 500, (1000,) * n_chunks, (0.5,) * n_chunks,
                  {"cpu": 0.01})
    return VideoSpec("v", float(n_chunks), 1.0, n_chunks, (rep,), (0.0,) * n_chunks + (1.0,))


def test_zero_capacity_link_is_all_startup():
    """Nothing ever arrives: the whole session is the first video's startup."""
    ev = []
    m = SessionModel([_spec(), _spec()], [3.0, 3.0], emit=ev.append, session_s=10.0)
    m.start_download(0, 0, "pixel/h264/500")  # never completes
    m.advance(10.0)
    assert m.ended
    s = summarize(ev)
    assert s["stall_s"] == 0 and s["stall_count"] == 0
    assert s["rebuffer_s"] == pytest.approx(10.0) and s["ttfc_s"] == pytest.approx(10.0)
    assert s["bytes_downloaded"] == 0 and s["play_s"] == 0 and s["cpr"] == 0
    assert s["qoe"] == pytest.approx(-1.85 * 10.0)
    assert [e["event"] for e in ev].count("download_cancel") == 1


def test_link_dies_mid_video_is_all_stall_afterwards():
    ev = []
    m = SessionModel([_spec()], [3.0], emit=ev.append, session_s=10.0)
    m.start_download(0, 0, "pixel/h264/500")
    m.advance(0.5)
    m.finish_download(0, 0)
    m.next_decode("cpu")
    m.decode_started("cpu", 0.01)
    m.decode_done("cpu", 0.01, 30)
    m.advance(10.0)
    s = summarize(ev)
    assert s["startup_s_mean"] == pytest.approx(0.5)
    assert s["stall_s"] == pytest.approx(10.0 - 0.5 - 1.0) and s["stall_count"] == 1
    assert s["rebuffer_s"] + s["play_s"] == pytest.approx(10.0)
