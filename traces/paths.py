"""Where real traces live, how to pick some of a dataset, and stable hashes for run metadata.

Trace directory: ``$PROMPTBED_TRACES`` if set (it must exist), else ``../shared/traces``
beside the checkout (resolved from this package's location, never the working directory)
if it exists, else None: callers then use the synthetic generator (``open_trace`` does).
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import numpy as np

from traces.trace import Trace, TraceError

ENV_VAR = "PROMPTBED_TRACES"
REPO_ROOT = Path(__file__).resolve().parent.parent
# Files in a dataset folder that are documentation, not traces.
_NOT_TRACES = {"PROVENANCE.md", "README.md", "README", "LICENSE"}


def trace_dir() -> Path | None:
    """The real-trace directory, or None when there is none (then: synthetic traces)."""
    env = os.environ.get(ENV_VAR)
    if env:
        p = Path(env).expanduser().resolve()
        if not p.is_dir():
            raise TraceError(f"{ENV_VAR}={env}: not a directory (expected the trace folder, "
                             f"e.g. a copy of shared/traces)")
        return p
    p = (REPO_ROOT.parent / "shared" / "traces").resolve()
    return p if p.is_dir() else None


def _natural_key(p: Path) -> list:
    return [int(x) if x.isdigit() else x for x in re.split(r"(\d+)", p.as_posix())]


def list_traces(dataset: str, root: Path | None = None) -> list[Path]:
    """All trace files under ``root/dataset`` (recursively), in natural name order
    (``2`` before ``10``). ``dataset`` is a folder relative to the trace directory, e.g.
    ``short-video-challenge/network/medium``, or one file."""
    root = root or trace_dir()
    if root is None:
        raise TraceError(f"no trace directory (set {ENV_VAR} or place shared/traces beside "
                         f"the checkout) for dataset {dataset!r}")
    base = (Path(root) / dataset)
    if base.is_file():
        return [base]
    if not base.is_dir():
        raise TraceError(f"{base}: no such dataset folder (expected a folder under {root})")
    files = [p for p in base.rglob("*") if p.is_file() and p.name not in _NOT_TRACES
             and not p.name.startswith(".")]
    if not files:
        raise TraceError(f"{base}: no trace files")
    return sorted(files, key=_natural_key)


def select(dataset: str, n: int | None = None, seed: int | None = None,
           root: Path | None = None) -> list[Path]:
    """``n`` traces of ``dataset``: the first ``n`` in natural order, or, with ``seed``, a
    seeded random choice (returned in natural order). ``n=None``: all of them."""
    files = list_traces(dataset, root)
    if n is None or n >= len(files):
        return files
    if n <= 0:
        raise TraceError(f"select({dataset!r}): n must be > 0, got {n}")
    if seed is None:
        return files[:n]
    idx = np.random.default_rng(seed).choice(len(files), size=n, replace=False)
    return [files[i] for i in sorted(idx)]


def file_hash(path: str | Path) -> str:
    """``sha256:<hex>`` of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return "sha256:" + h.hexdigest()


def trace_hash(trace: Trace) -> str:
    """``sha256:<hex>`` of a trace's content (times relative to its start, rates, last
    step), independent of name and source: equal traces hash equal on every machine."""
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(trace.times_s - trace.start_s, dtype="<f8").tobytes())
    h.update(np.ascontiguousarray(trace.rates_mbps, dtype="<f8").tobytes())
    h.update(np.float64(trace.last_step_s).astype("<f8").tobytes())
    return "sha256:" + h.hexdigest()


def open_trace(spec: str, seed: int = 0, duration_s: float = 600.0, fmt: str | None = None,
               **options) -> Trace:
    """Resolve a trace specification used in run configs.

    ``synthetic[:PROFILE]``: generated (``traces.synthetic``) with ``seed`` for ``duration_s``.
    An existing path: loaded. Otherwise a path relative to the trace directory
    (e.g. ``short-video-challenge/network/medium/0``); when there is no trace directory the
    default synthetic profile is used instead and ``meta["fallback"]`` says so.
    """
    from traces import formats, synthetic

    if spec == "synthetic" or spec.startswith("synthetic:"):
        profile = spec.split(":", 1)[1] if ":" in spec else synthetic.DEFAULT_PROFILE
        return synthetic.generate(profile, duration_s=duration_s, seed=seed)
    p = Path(spec).expanduser()
    if p.is_file():
        return formats.load(p, fmt, **options)
    root = trace_dir()
    if root is None:
        tr = synthetic.generate(synthetic.DEFAULT_PROFILE, duration_s=duration_s, seed=seed)
        tr.meta["fallback"] = f"no trace directory; synthetic instead of {spec!r}"
        return tr
    q = root / spec
    if not q.is_file():
        raise TraceError(f"{spec}: no such trace file (looked in {root}; expected a file, "
                         f"'synthetic[:profile]', or a path under the trace directory)")
    return formats.load(q, fmt, **options)
