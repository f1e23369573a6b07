"""players.decode: the decode worker on real chunks of a tiny prepared catalog (real PyAV)."""

import asyncio

import pytest

from origin import manifest as mf
from origin.prepare import PrepareConfig, prepare_catalog
from players.decode import DecodeError, DecodeWorker


@pytest.fixture(scope="module")
def chunks(tmp_path_factory):
    out = tmp_path_factory.mktemp("cat")
    prepare_catalog(PrepareConfig(out=out, count=1, duration_s=2.0, codecs=("h264",),
                                  ladder_kbps=(200,), width=64, height=64, jobs=1,
                                  decode_samples=1), progress=False)
    cat = mf.load_catalog(out)
    vid = cat.video_ids[0]
    rep = cat.load_video(vid).representation("pixel/h264/200")
    vdir = mf.video_dir(out, vid)
    return [((vdir / c.path).read_bytes(), c.frames) for c in rep.chunks]


def test_pixel_chunk_decodes_for_real(chunks):
    w = DecodeWorker("cpu")
    data, frames = chunks[0]
    r = w.decode(data, "pixel/h264/200", expected_frames=frames)
    assert r.frames == frames == 30
    assert r.device == "cpu"
    assert 0 < r.work_s <= r.decode_s


def test_bad_chunks_raise_decode_error(chunks):
    w = DecodeWorker("cpu")
    data, frames = chunks[0]
    with pytest.raises(DecodeError, match="pixel/h264/200"):
        w.decode(b"", "pixel/h264/200")
    with pytest.raises(DecodeError, match="pixel/h264/200"):
        w.decode(b"\x00\x00\x00\x01garbage" * 20, "pixel/h264/200", expected_frames=frames)
    with pytest.raises(DecodeError, match="pixel/h264/200"):  # truncated
        w.decode(data[: len(data) // 3], "pixel/h264/200", expected_frames=frames)
    with pytest.raises(DecodeError, match="unknown representation"):
        w.decode(data, "vector/svg/1")


def test_hold_to_profile_latency(chunks):
    w = DecodeWorker("npu")
    data, frames = chunks[1]
    r = w.decode(data, "pixel/h264/200", expected_frames=frames, hold_s=0.2)
    assert r.decode_s >= 0.2
    assert r.work_s < 0.2
    assert r.frames == frames


def test_profile_mode_only_holds(chunks):
    w = DecodeWorker("npu", mode="profile")
    r = w.decode(b"not decoded", "prompt/local/r8", expected_frames=30, hold_s=0.05)
    assert r.frames == 30 and r.work_s == 0 and r.decode_s >= 0.05
    with pytest.raises(DecodeError, match="profile"):
        w.decode(b"x", "pixel/h264/200")
    with pytest.raises(ValueError, match="mode"):
        DecodeWorker("cpu", mode="fast")


def test_async_decode_leaves_event_loop_free(chunks):
    """While a held decode runs on the worker thread, the event loop keeps ticking."""
    async def main():
        w = DecodeWorker("cpu")
        ticks = 0
        done = False

        async def ticker():
            nonlocal ticks
            while not done:
                ticks += 1
                await asyncio.sleep(0.01)

        t = asyncio.create_task(ticker())
        data, frames = chunks[0]
        res = await w.decode_async(data, "pixel/h264/200", frames, hold_s=0.3)
        done = True
        await t
        w.close()
        return res, ticks

    res, ticks = asyncio.run(main())
    assert res.frames == 30 and res.decode_s >= 0.3
    assert ticks >= 10  # ~30 expected; a blocked loop would give 1




def test_prompt_model_load_failure_is_a_decode_error_tried_once(tmp_path):
    """A missing checkpoint or an unknown model name is a DecodeError for every chunk
    (the player logs decode_error and plays on), naming the model and path; the real
    loader is called once per model, not once per chunk."""
    pytest.importorskip("torch")
    from codec import load_decoder

    calls = []

    def counting_load(**kw):
        calls.append(kw["model"])
        return load_decoder(**kw)

    missing = tmp_path / "gone.safetensors"
    w = DecodeWorker("cpu", prompt_models={"mine": str(missing)}, load_decoder=counting_load)
    for _ in range(3):
        with pytest.raises(DecodeError, match=f"^prompt/mine/r8: prompt model 'mine' cannot "
                                              f"be loaded: FileNotFoundError: model "
                                              f"'{missing}': no such local-model weights"):
            w.decode(b"any bytes", "prompt/mine/r8", expected_frames=30)
    assert calls == [str(missing)]
    with pytest.raises(DecodeError, match="^prompt/nosuch/r2: prompt model 'nosuch' cannot be "
                                          "loaded: .*expected 'local'"):
        w.decode(b"any bytes", "prompt/nosuch/r2")
    with pytest.raises(DecodeError) as exc:
        w.decode(b"any bytes", "prompt/nosuch/r4")
    assert "\n" not in str(exc.value)
    assert calls == [str(missing), "nosuch"]


def test_decode_threads_default_matches_the_measured_costs():
    from codec import catalog, profiles

    assert DecodeWorker("cpu").threads == profiles.DECODE_THREADS
    assert catalog.DEFAULTS["decode_threads"] == profiles.DECODE_THREADS
    assert profiles.get("cpu-local").threads == profiles.DECODE_THREADS
    assert DecodeWorker("cpu", threads=1).threads == 1


def test_warm_up_loads_each_prompt_model_once_before_the_session():
    """The worker loads the model and runs one synthetic decode at warm-up, so the first
    real chunk pays neither; a model that cannot load is reported per chunk later."""
    import codec

    loads, decodes = [], []

    def load(**kw):
        dec = codec.load_decoder(**kw)
        real = dec.decode_chunk

        def counted(data, prev_state=None):
            decodes.append(len(data))
            return real(data, prev_state)

        dec.decode_chunk = counted
        loads.append(kw["model"])
        return dec

    w = DecodeWorker("cpu", load_decoder=load)
    w.warm_up([("prompt/local/r4", 64, 64), ("prompt/local/r8", 64, 64),
               ("prompt/missing-model/r8", 64, 64)])
    assert loads == ["local"] and len(decodes) == 1  # once per model and frame size
    w.warm_up([("prompt/local/r8", 64, 64)])  # loaded once per worker
    assert loads == ["local"]
    with pytest.raises(DecodeError, match="not a prompt representation"):
        w.warm_up([("pixel/h264/250", 64, 64)])
    with pytest.raises(DecodeError, match="missing-model"):
        w.decode(b"x", "prompt/missing-model/r8")
