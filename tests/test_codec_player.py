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
