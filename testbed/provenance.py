"""Provenance for run metadata: git commit and dirty flag, package versions, kernel, hashes.

Everything here is read-only and cheap (one ``git`` call or two); a missing git or a
checkout without ``.git`` gives ``None`` values, never an error, so a run from an
unpacked tarball still records what it can.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import platform
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("promptbed", "aiohttp", "av", "numpy", "psutil", "torch", "diffusers",
            "matplotlib", "mininet", "scikit-image")


def git_state(root: Path = REPO_ROOT) -> dict:
    """{"commit": sha or None, "dirty": bool or None, "dirty_files": the first 20 changed or
    untracked paths, "branch": name or None}."""
    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", "-C", str(root), *args], capture_output=True,
                                 text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {"commit": None, "dirty": None, "branch": None}
    # Untracked files count (a new module changes what runs); ignored ones (.venv, results)
    # do not.
    status = git("status", "--porcelain")
    changed = [] if not status else [line[3:] for line in status.splitlines()]
    return {"commit": commit, "dirty": None if status is None else bool(changed),
            "dirty_files": changed[:20], "branch": git("rev-parse", "--abbrev-ref", "HEAD")}


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict:
    """Installed version of each package (None when absent); torch is not imported."""
    out = {}
    for n in names:
        try:
            out[n] = importlib.metadata.version(n)
        except importlib.metadata.PackageNotFoundError:
            out[n] = None
    return out


def system_info() -> dict:
    u = platform.uname()
    return {"kernel": u.release, "system": u.system, "machine": u.machine, "host": u.node,
            "python": sys.version.split()[0], "cpus": os.cpu_count(),
            "euid": os.geteuid() if hasattr(os, "geteuid") else None}


def catalog_hash(catalog_dir: str | os.PathLike) -> str | None:
    """``sha256:<hex>`` over catalog.json and every video's manifest (names and bytes);
    manifests carry each chunk's sha256, so this pins the content. None when absent."""
    root = Path(catalog_dir)
    top = root / "catalog.json"
    if not top.is_file():
        return None
    h = hashlib.sha256()
    files = [top] + sorted(p for p in root.rglob("manifest.json") if p.is_file())
    for p in files:
        h.update(p.relative_to(root).as_posix().encode() + b"\0")
        h.update(p.read_bytes())
    return "sha256:" + h.hexdigest()


def collect(argv: list[str] | None = None) -> dict:
    """The provenance block every run writes into metadata.json."""
    return {"command_line": list(sys.argv if argv is None else argv), "cwd": os.getcwd(),
            "git": git_state(), "packages": package_versions(), "system": system_info()}
