"""End to end with prompt chunks: catalog -> prompt representations (the committed local
model, real fitting) -> real origin process -> real player process that fetches prompt
chunks over loopback sockets and decodes them with the real prompt decoder."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")

from codec import weights
from origin import manifest as mf
from origin.prepare import PrepareConfig, prepare_catalog
from players.accounting import read_events
from players.schedulers.base import Download, Scheduler, Wait, register

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_player import Origin, _config

pytestmark = pytest.mark.skipif(not weights.default_paths()[0].is_file(),
                                reason="no committed local checkpoint")


@register
class _PromptOnly(Scheduler):
    """Test-only: every chunk of the window in feed order, in its prompt representation."""

    name = "test-prompt-only"

    def decide(self, obs):
        for v in obs.videos:
            prompt = [r.name for r in v.representations if r.name.startswith("prompt/")]
            rep = prompt[0] if prompt else v.representations[0].name
            first = int(obs.playhead_s // v.chunk_s) if v.position == obs.current else 0
            for c in range(first, v.n_chunks):
                if c not in v.downloaded and not obs.is_in_flight(v.position, c):
                    return Download(v.position, c, rep)
        return Wait(0.5)


@pytest.fixture(scope="module")
def prompt_catalog(tmp_path_factory) -> Path:
    from codec.catalog import add_prompt_representations

    out = tmp_path_factory.mktemp("pcat")
    prepare_catalog(PrepareConfig(out=out, count=2, duration_s=2.0, codecs=("h264",),
                                  ladder_kbps=(200,), width=64, height=64, jobs=1,
                                  decode_samples=1), progress=False)
    summary = add_prompt_representations(out, [2], jobs=2, progress=False, decode_samples=1)
    assert summary["chunks_fitted"] == 4
    return out


def test_catalog_gets_prompt_representations_and_resumes(prompt_catalog):
    from codec.catalog import add_prompt_representations

    vm = mf.load_video_manifest(mf.video_manifest_path(prompt_catalog, "v000"))
    rep = vm.representation("prompt/local/r2")
    assert rep.model_hash == weights.file_sha256(weights.default_paths()[0])
    assert rep.init_bytes > 0 and rep.chunks[0].bytes > rep.chunks[1].bytes
    assert all(c.psnr_db > 15 and 0 < c.ssim <= 1 for c in rep.chunks)
    assert rep.decode_cost["cpu"].s_per_chunk_mean > 0
    again = add_prompt_representations(prompt_catalog, [2], jobs=1, progress=False,
                                       decode_samples=1)
    assert again["chunks_fitted"] == 0 and again["chunks_reused"] == 4


def test_player_plays_prompt_chunks(prompt_catalog, tmp_path):
    origin = Origin(prompt_catalog, tmp_path / "access.jsonl")
    try:
        cfg = _config(origin.url, tmp_path,
                      feed={"videos": ["v000", "v001"], "watch_s": [2.0, 2.0]},
                      scheduler={"name": "test-prompt-only", "params": {}, "seed": 1})
        cfg["session"]["duration_s"] = 6.0
        # the player process imports this file to register the test scheduler
        cfg_path = tmp_path / "player.json"
        proc = _launch_here(cfg, tmp_path, cfg_path)
        _out, err = proc.communicate(timeout=120)
    finally:
        origin.stop()
    assert proc.returncode == 0, err
    ev = read_events(tmp_path / "events.jsonl")
    assert not [e for e in ev if e["event"] in ("decode_error", "error")], ev
    reqs = [e for e in ev if e["event"] == "download_done"]
    assert reqs and all("prompt/local/r2" in json.dumps(e) for e in reqs)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["chunks_decoded"] >= 4
    assert summary["decode_s"] > 0


def test_player_with_a_missing_prompt_model_logs_decode_errors_and_plays_on(prompt_catalog,
                                                                           tmp_path):
    """A checkpoint that is not there ends no player: every prompt chunk becomes a
    decode_error naming the model and path, and the session runs to its end."""
    missing = tmp_path / "gone" / "local.safetensors"
    origin = Origin(prompt_catalog, tmp_path / "access.jsonl")
    try:
        cfg = _config(origin.url, tmp_path,
                      feed={"videos": ["v000", "v001"], "watch_s": [2.0, 2.0]},
                      scheduler={"name": "test-prompt-only", "params": {}, "seed": 1},
                      prompt_models={"local": str(missing)})
        cfg["session"]["duration_s"] = 3.0
        proc = _launch_here(cfg, tmp_path, tmp_path / "player.json")
        _out, err = proc.communicate(timeout=120)
    finally:
        origin.stop()
    assert proc.returncode == 0, err
    ev = read_events(tmp_path / "events.jsonl")
    errs = [e for e in ev if e["event"] == "decode_error"]
    assert len(errs) >= 2, ev
    assert all(e["error"].startswith("prompt/local/r2: prompt model 'local' cannot be loaded")
               and str(missing) in e["error"] for e in errs), errs[0]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["chunks_decoded"] == 0 and "error" not in summary


def test_prepare_prompt_flags_reach_the_manifest(tmp_path, capsys):
    """``testbed prepare`` with --prompt-model (a checkpoint directory), refine steps, key
    interval and an early-stop target: all of it shows in the manifest and the chunks."""
    import shutil

    from codec import wire
    from testbed.cli import main as cli_main

    mini = tmp_path / "mini"
    mini.mkdir()
    for src in weights.default_paths():
        shutil.copy(src, mini / src.name)
    out = tmp_path / "cat"
    rc = cli_main(["prepare", "--out", str(out), "--count", "1", "--duration-s", "1",
                   "--size", "64x64", "--codecs", "h264", "--ladder-kbps", "200", "--jobs", "1",
                   "--decode-samples", "1", "--quiet", "--prompt-ranks", "2",
                   "--prompt-model", str(mini), "--prompt-refine-steps", "2",
                   "--prompt-key-interval", "5", "--prompt-target-psnr", "10"])
    assert rc == 0
    assert "prompt representations prompt/mini/r2 added (1 chunks fitted" in capsys.readouterr().out
    vdir = mf.video_dir(out, "v000")
    rep = mf.load_video_manifest(vdir / mf.MANIFEST_FILE).representation("prompt/mini/r2")
    assert rep.model == "mini"
    assert rep.model_hash == weights.file_sha256(weights.default_paths()[0])
    assert (rep.params["key_interval"], rep.params["refine_steps"],
            rep.params["target_psnr_db"], rep.params["decode_threads"]) == (5, 2, 10.0, 2)
    chunk = rep.chunks[0]
    assert wire.unpack((vdir / chunk.path).read_bytes()).positions == \
        wire.keyframe_positions(30, 5)
    # 10 dB is reached at the start: refinement stops before its first step
    side = json.loads((vdir / chunk.path).with_suffix(".json").read_text())
    assert side["steps"] == 0 and side["settings"]["target_psnr_db"] == 10.0


def _launch_here(cfg: dict, tmp: Path, path: Path):
    import subprocess

    path.write_text(json.dumps(cfg))
    code = ("import importlib.util, sys; "
            f"sys.path.insert(0, {str(Path(__file__).resolve().parent)!r}); "
            f"s = importlib.util.spec_from_file_location('codec_player_mod', {str(__file__)!r}); "
            "m = importlib.util.module_from_spec(s); s.loader.exec_module(m); "
            "from players.player import main; sys.exit(main(sys.argv[1:]))")
    return subprocess.Popen([sys.executable, "-c", code, str(path)],
                            cwd=Path(__file__).resolve().parent.parent,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
