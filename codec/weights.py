"""Checkpoints of the ``local`` model: ``<name>.safetensors`` (fp16 weights) + ``<name>.json``
(model config, training provenance, measured figures). Never pickle: safetensors only.

The model hash written into every prompt chunk is the sha256 of the weights file, so a chunk
fitted with one checkpoint is refused by a decoder holding another.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
DEFAULT_NAME = "local"


def default_paths() -> tuple[Path, Path]:
    return WEIGHTS_DIR / f"{DEFAULT_NAME}.safetensors", WEIGHTS_DIR / f"{DEFAULT_NAME}.json"


def resolve(path: str | Path | None) -> tuple[Path, Path]:
    """``None``/"local" -> the committed checkpoint; a ``.safetensors`` file or a directory
    holding ``local.safetensors`` -> that one. Returns (weights, metadata json)."""
    if path is None or str(path) == DEFAULT_NAME:
        return default_paths()
    p = Path(path)
    if p.is_dir():
        p = p / f"{DEFAULT_NAME}.safetensors"
    return p, p.with_suffix(".json")


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def save(model, weights_path: Path, meta: dict) -> str:
    """Write weights + metadata (``meta`` gets ``config`` and ``sha256``); returns the hash."""
    from safetensors.torch import save_file

    weights_path = Path(weights_path)
    weights_path.parent.mkdir(parents=True, exist_ok=True)
    # fp16 on disk keeps the committed checkpoint small; loading casts back to fp32.
    state = {k: (v.detach().cpu().half() if v.is_floating_point() else v.detach().cpu())
             .contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(weights_path))
    digest = file_sha256(weights_path)
    meta = dict(meta, config=model.config, sha256=digest)
    weights_path.with_suffix(".json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return digest


def load(path: str | Path | None = None):
    """Load a ``LocalModel`` (eval mode, CPU) and its metadata; returns (model, meta, sha256)."""
    from safetensors.torch import load_file

    from codec.model import LocalModel

    weights, meta_path = resolve(path)
    if not weights.is_file():
        raise FileNotFoundError(f"local model weights {weights} do not exist; train them with "
                                f"'testbed codec train --out {weights}'")
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{meta_path}: cannot read the model metadata: {exc}") from None
    model = LocalModel(meta.get("config"))
    state = {k: v.float() if v.is_floating_point() else v
             for k, v in load_file(str(weights)).items()}
    model.load_state_dict(state)
    model.eval()
    return model, meta, file_sha256(weights)
