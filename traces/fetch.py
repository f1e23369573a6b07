"""Download public trace datasets from their canonical locations (or a mirror).

The registry ``traces/data/datasets.json`` names each dataset, the GitHub repository and
commit it comes from, and every file: its path in the local layout (the layout of
``shared/traces``), its path in the source repository (or zip archive), its size and its
git blob SHA-1 (``git hash-object``), which every download is checked against.

``fetch(name, dest)`` writes files under ``dest`` in the local layout, so ``dest`` can
serve as ``PROMPTBED_TRACES``. Files already present with the right hash are kept; each
new file is written to a temporary name and renamed only after its hash matched, so an
interrupted or failed fetch never leaves a partial file under a real name.

Canonical URLs are ``https://raw.githubusercontent.com/<repo>/<commit>/<path>``; ucc-5g is
one zip archive in its repository, downloaded once and unpacked member by member. With a
mirror (``--mirror URL``), every file is ``<URL>/<local path>``: a mirror serves the local
layout, like an HTTP server over a copy of ``shared/traces``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import tempfile
import zipfile
from pathlib import Path
from urllib.parse import quote

from traces.trace import TraceError

REGISTRY_PATH = Path(__file__).resolve().parent / "data" / "datasets.json"
RAW_URL = "https://raw.githubusercontent.com/{repo}/{commit}/{path}"

# Local folder -> (repository, commit, source folder or zip member prefix, zip file or None).
# From shared/traces/PROVENANCE.md.
SOURCES: dict[str, dict] = {
    "mahimahi": {"repo": "ravinet/mahimahi",
                 "commit": "ae477d437615b972217498ba52be07db17a15618",
                 "map": {"mahimahi/": "traces/"}},
    "fcc": {"repo": "confiwent/Real-world-bandwidth-traces",
            "commit": "d28c4fd48d0e358db024cc0217b111c070815fa7",
            "map": {"fcc/": "fcc_ori/cooked_traces/"}},
    "hsdpa": {"repo": "confiwent/Real-world-bandwidth-traces",
              "commit": "d28c4fd48d0e358db024cc0217b111c070815fa7",
              "map": {"hsdpa/": "cooked_3gp/"}},
    "oboe": {"repo": "confiwent/Real-world-bandwidth-traces",
             "commit": "d28c4fd48d0e358db024cc0217b111c070815fa7",
             "map": {"oboe/": "traces_oboe/"}},
    "puffer": {"repo": "confiwent/Real-world-bandwidth-traces",
               "commit": "d28c4fd48d0e358db024cc0217b111c070815fa7",
               "map": {"puffer/": "puffer_220218/test_traces/"}},
    "solis-wifi": {"repo": "GreenLv/Solis-WiFi-Trace",
                   "commit": "1f5ec3b61633cb5679f43ae90327ac48e829001c",
                   "map": {"solis-wifi/": "traces/"}},
    "lumos-4g-abr": {"repo": "GreenLv/Lumos",
                     "commit": "9f48da1d050438c75483ed880afcba5c248c73ce",
                     "map": {"lumos-4g-abr/": "ABR_data/"}},
    "ucc-5g": {"repo": "uccmisl/5Gdataset",
               "commit": "306d92eba81cb4f1195d8b8eba625666a02a10ec",
               "archive": "5G-production-dataset.zip",
               "map": {"ucc-5g/": "5G-production-dataset/"}},
    "short-video-challenge": {
        "repo": "AItransCompetition/Short-Video-Streaming-Challenge",
        "commit": "2fba2586c8b0dbfbdfe923828cc27abb22051b21",
        "map": {"short-video-challenge/network/": "data/network_traces/",
                "short-video-challenge/video-sizes/": "data/short_video_size/",
                "short-video-challenge/user-retention/": "data/user_ret/"}},
    "dashlet-swipe": {"repo": "PrincetonUniversity/Dashlet",
                      "commit": "33cf3688dcfda57915a3086f075eb76b15c3da29",
                      "map": {"dashlet-swipe/turk/": "abr-server/probability/turk/"}},
}


def git_blob_sha1(data: bytes) -> str:
    """The SHA-1 ``git hash-object`` gives these bytes."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def build_registry(trace_dir: Path) -> dict:
    """The registry of every dataset in ``SOURCES`` from a verified local copy (names,
    sizes and hashes only)."""
    out = {}
    for name, src in SOURCES.items():
        files = []
        for local_prefix, source_prefix in src["map"].items():
            folder = trace_dir / local_prefix
            if not folder.is_dir():
                raise TraceError(f"{folder}: missing (expected dataset {name!r})")
            for p in sorted(x for x in folder.rglob("*") if x.is_file()):
                rel = p.relative_to(trace_dir).as_posix()
                data = p.read_bytes()
                files.append({"path": rel, "source": source_prefix + rel[len(local_prefix):],
                              "size": len(data), "git_sha1": git_blob_sha1(data)})
        entry = {k: v for k, v in src.items() if k != "map"}
        out[name] = {**entry, "files": files}
    return {"version": 1, "datasets": out}


def load_registry(path: Path = REGISTRY_PATH) -> dict:
    try:
        return json.loads(Path(path).read_text())["datasets"]
    except (OSError, KeyError, json.JSONDecodeError) as exc:
        raise TraceError(f"{path}: unreadable dataset registry ({exc})") from None


def _check(data: bytes, entry: dict, url: str) -> None:
    if len(data) != entry["size"]:
        raise TraceError(f"{url}: {len(data)} bytes (expected {entry['size']} for "
                         f"{entry['path']})")
    got = git_blob_sha1(data)
    if got != entry["git_sha1"]:
        raise TraceError(f"{url}: git blob hash {got} (expected {entry['git_sha1']} for "
                         f"{entry['path']})")


def _have(dest: Path, entry: dict) -> bool:
    p = dest / entry["path"]
    if not p.is_file() or p.stat().st_size != entry["size"]:
        return False
    return git_blob_sha1(p.read_bytes()) == entry["git_sha1"]


def _write(dest: Path, entry: dict, data: bytes) -> None:
    target = dest / entry["path"]
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


async def _get(session, url: str, attempts: int = 3) -> bytes:
    import aiohttp

    last = None
    for i in range(attempts):
        try:
            async with session.get(url) as resp:
                if resp.status != 200:
                    raise TraceError(f"{url}: HTTP {resp.status} (expected 200)")
                return await resp.read()
        except (TimeoutError, aiohttp.ClientError) as exc:
            last = exc
            await asyncio.sleep(0.2 * (i + 1))
    raise TraceError(f"{url}: download failed after {attempts} attempts ({last!r})")


async def _fetch_async(ds: dict, todo: list[dict], dest: Path, mirror: str | None,
                       parallel: int, timeout_s: float, progress) -> None:
    import aiohttp

    timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        if mirror is None and "archive" in ds:
            url = RAW_URL.format(repo=ds["repo"], commit=ds["commit"], path=ds["archive"])
            data = await _get(session, url)
            with tempfile.TemporaryFile() as f:
                f.write(data)
                try:
                    zf = zipfile.ZipFile(f)
                except zipfile.BadZipFile:
                    raise TraceError(f"{url}: not a zip archive") from None
                for entry in todo:
                    try:
                        member = zf.read(entry["source"])
                    except KeyError:
                        raise TraceError(f"{url}: archive lacks {entry['source']}") from None
                    _check(member, entry, f"{url}!{entry['source']}")
                    _write(dest, entry, member)
                    progress(entry)
            return
        sem = asyncio.Semaphore(parallel)

        async def one(entry: dict) -> None:
            if mirror is not None:
                url = mirror.rstrip("/") + "/" + quote(entry["path"])
            else:
                url = RAW_URL.format(repo=ds["repo"], commit=ds["commit"],
                                     path=quote(entry["source"]))
            async with sem:
                data = await _get(session, url)
            _check(data, entry, url)
            _write(dest, entry, data)
            progress(entry)

        results = await asyncio.gather(*(one(e) for e in todo), return_exceptions=True)
        failed = [r for r in results if isinstance(r, BaseException)]
        for r in failed:
            if not isinstance(r, TraceError):
                raise r
        if failed:
            shown = "; ".join(str(r) for r in failed[:5])
            more = f" (and {len(failed) - 5} more)" if len(failed) > 5 else ""
            raise TraceError(f"{len(failed)} of {len(todo)} files failed, the others were "
                             f"written: {shown}{more}")


def fetch(name: str, dest: str | Path, mirror: str | None = None, parallel: int = 8,
          timeout_s: float = 300.0, progress=None, registry: Path = REGISTRY_PATH) -> dict:
    """Download dataset ``name`` into ``dest``; return counts
    ``{"files", "fetched", "kept", "bytes"}``. Raises TraceError naming the file on any
    failure (files fetched before it stay, verified)."""
    table = load_registry(registry)
    if name not in table:
        raise TraceError(f"unknown dataset {name!r} (expected one of {', '.join(sorted(table))})")
    ds = table[name]
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    todo = [e for e in ds["files"] if not _have(dest, e)]
    done = {"n": 0, "bytes": 0}

    def note(entry: dict) -> None:
        done["n"] += 1
        done["bytes"] += entry["size"]
        if progress:
            progress(entry)

    if todo:
        asyncio.run(_fetch_async(ds, todo, dest, mirror, parallel, timeout_s, note))
    return {"files": len(ds["files"]), "fetched": done["n"],
            "kept": len(ds["files"]) - len(todo), "bytes": done["bytes"]}
