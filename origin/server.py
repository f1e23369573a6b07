"""The aiohttp origin: serves catalog.json, video manifests and chunks of a prepared catalog.

Routes (one table, ``ROUTES``)::

    GET       /catalog.json
    GET       /videos/{video}/manifest.json
    GET|HEAD  /videos/{video}/{representation}/{chunk}
              chunk = index, e.g. /videos/v000/pixel/h264/250/3
    GET       /healthz
    GET       /metrics      JSON counters per client and representation

Chunks support single byte ranges (``bytes=a-b``, ``bytes=a-``, ``bytes=-n``): 206 with
``Content-Range``, 416 with ``Content-Range: bytes */size`` when unsatisfiable; a header
with several ranges or bad syntax is ignored (full 200, as RFC 9110 allows). ``ETag`` is the
chunk's sha256 (manifests: sha256 of the file) and ``If-None-Match`` gives 304; ``If-Range``
with another ETag gives the full body.

Safety: a request only ever reaches a file through the manifest: the video must be in
the catalog, the representation in its manifest, the chunk a decimal index in range; the
file path comes from the (validated) manifest and is checked to lie inside the catalog.
Paths with ``..``, encoded dots or slashes, backslashes or NUL are refused with 400 before
routing. Header lines over ``max_field_bytes`` are refused by aiohttp (400/431); request
bodies over ``max_body_bytes`` get 413.

Every request is logged as one JSON line: {t_s (unix), client, method, path, status,
bytes (body bytes sent), duration_ms (until the body was handed to the socket), ...}.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import signal
import sys
import time
from collections import OrderedDict, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from aiohttp import web

from origin import manifest as mf

_CHUNK_RE = r"{rep:(?:pixel|prompt)/[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+}"
_BAD_PATH_RE = re.compile(r"(^|/)\.\.?(/|$)|%2e|%2f|%5c|%00|\\|\x00", re.IGNORECASE)
_RANGE_RE = re.compile(r"^bytes=(\d*)-(\d*)$")
_INDEX_RE = re.compile(r"^(0|[1-9][0-9]{0,8})$")


@dataclass(frozen=True)
class OriginConfig:
    """Origin settings.

    catalog_dir: a prepared catalog. host / port: where ``serve`` listens (port 0: any).
    access_log: file for the JSON access log (None: standard output).
    max_field_bytes: longest request line / header field accepted (bytes).
    max_body_bytes: largest request body accepted (bytes); GETs need none.
    cache_bytes: chunk bytes kept in memory (LRU) so hot chunks skip the disk.
    shutdown_timeout_s: how long in-flight requests may take to finish on shutdown.
    """

    catalog_dir: Path
    host: str = "127.0.0.1"
    port: int = 8080
    access_log: Path | None = None
    max_field_bytes: int = 8190
    max_body_bytes: int = 1024
    cache_bytes: int = 256 * 1024 * 1024
    shutdown_timeout_s: float = 10.0


class _Catalog:
    """The catalog as served: exact file bytes for manifests, a chunk lookup, a bytes cache."""

    def __init__(self, root: Path, cache_bytes: int):
        self.root = root.resolve()
        self.catalog = mf.load_catalog(self.root)
        self.catalog_bytes = (self.root / mf.CATALOG_FILE).read_bytes()
        self.catalog_etag = _etag(hashlib.sha256(self.catalog_bytes).hexdigest())
        self.manifests: dict[str, mf.VideoManifest] = {}
        self.manifest_bytes: dict[str, tuple[bytes, str]] = {}
        for vid in self.catalog.video_ids:
            path = self.catalog.manifest_path(vid)
            # Parse the exact bytes served, so what clients get is what was validated.
            data = path.read_bytes()
            vm = mf.parse_video_manifest(data, source=str(path))
            if vm.video != vid:
                raise mf.ManifestError(f"{path}: field 'video': expected {vid!r}, got "
                                       f"{vm.video!r}")
            self.manifests[vid] = vm
            self.manifest_bytes[vid] = (data, _etag(hashlib.sha256(data).hexdigest()))
        self.cache_bytes = cache_bytes
        self._cache: OrderedDict[Path, bytes] = OrderedDict()
        self._cached = 0

    def chunk_path(self, vid: str, chunk: mf.Chunk) -> Path:
        base = mf.video_dir(self.root, vid)
        path = (base / chunk.path).resolve()
        # The manifest's paths are validated, but a symlink could still lead out.
        if not path.is_relative_to(self.root):
            raise web.HTTPForbidden(text=json.dumps({"error": "chunk path leaves the catalog"}),
                                    content_type="application/json")
        return path

    async def read(self, path: Path, expected_size: int) -> bytes:
        data = self._cache.get(path)
        if data is not None:
            self._cache.move_to_end(path)
            return data
        # A miss reads in a worker thread so a slow disk never stalls other responses.
        data = await asyncio.to_thread(path.read_bytes)
        if len(data) != expected_size:
            raise web.HTTPInternalServerError(
                text=json.dumps({"error": f"chunk file has {len(data)} bytes, manifest says "
                                          f"{expected_size}"}), content_type="application/json")
        if len(data) <= self.cache_bytes:
            self._cache[path] = data
            self._cached += len(data)
            while self._cached > self.cache_bytes:
                _, old = self._cache.popitem(last=False)
                self._cached -= len(old)
        return data


class _Metrics:
    def __init__(self) -> None:
        self.started_s = time.time()
        self.requests = 0
        self.bytes = 0
        self.by_status: dict[int, int] = defaultdict(int)
        self.by_client: dict[str, dict[str, int]] = defaultdict(lambda: {"requests": 0,
                                                                         "bytes": 0})
        self.by_rep: dict[str, dict[str, int]] = defaultdict(lambda: {"requests": 0, "bytes": 0})

    def add(self, client: str, status: int, nbytes: int, rep: str | None) -> None:
        self.requests += 1
        self.bytes += nbytes
        self.by_status[status] += 1
        c = self.by_client[client]
        c["requests"] += 1
        c["bytes"] += nbytes
        if rep is not None:
            r = self.by_rep[rep]
            r["requests"] += 1
            r["bytes"] += nbytes

    def to_json(self) -> dict:
        return {
            "started_t_s": self.started_s,
            "uptime_s": time.time() - self.started_s,
            "requests": self.requests,
            "bytes": self.bytes,
            "by_status": {str(k): v for k, v in sorted(self.by_status.items())},
            "by_client": dict(self.by_client),
            "by_representation": dict(self.by_rep),
        }


CONFIG_KEY = web.AppKey("config", OriginConfig)
CATALOG_KEY = web.AppKey("catalog", _Catalog)
METRICS_KEY = web.AppKey("metrics", _Metrics)
LOG_KEY = web.AppKey("access_log", Any)
BODY_BYTES_KEY = web.RequestKey("body_bytes", int)
REP_KEY = web.RequestKey("representation", str)


def _etag(hexdigest: str) -> str:
    return f'"{hexdigest[:32]}"'


def _json_error(exc_cls: type[web.HTTPException], message: str, **kw) -> web.HTTPException:
    return exc_cls(text=json.dumps({"error": message}), content_type="application/json", **kw)


def _etag_matches(header: str | None, etag: str) -> bool:
    if not header:
        return False
    if header.strip() == "*":
        return True
    for tag in header.split(","):
        tag = tag.strip()
        tag = tag.removeprefix("W/")
        if tag == etag:
            return True
    return False


def parse_range(header: str | None, size: int) -> tuple[int, int] | None | str:
    """Byte range ``(start, end_inclusive)`` from a Range header, for a body of ``size``.

    Returns None when the header is absent or ignored (several ranges, bad syntax), or the
    string ``"unsatisfiable"``.
    """
    if header is None:
        return None
    m = _RANGE_RE.match(header.strip())
    if not m:
        return None
    first, last = m.group(1), m.group(2)
    if first == "" and last == "":
        return None
    if first == "":
        n = int(last)
        if n == 0 or size == 0:
            return "unsatisfiable"
        return max(0, size - n), size - 1
    start = int(first)
    end = int(last) if last != "" else size - 1
    if last != "" and end < start:
        return None  # syntactically invalid: ignore, as RFC 9110 says
    if start >= size:
        return "unsatisfiable"
    return start, min(end, size - 1)


async def _send(request: web.Request, body: bytes, content_type: str, etag: str,
                cache_control: str, ranges: bool = False) -> web.StreamResponse:
    """Send ``body`` honouring If-None-Match and (when ``ranges``) Range / If-Range."""
    headers = {"ETag": etag, "Cache-Control": cache_control}
    if ranges:
        headers["Accept-Ranges"] = "bytes"
    if _etag_matches(request.headers.get("If-None-Match"), etag):
        resp = web.StreamResponse(status=304, headers=headers)
        await resp.prepare(request)
        await resp.write_eof()
        return resp
    status, part = 200, body
    if ranges:
        rng = parse_range(request.headers.get("Range"), len(body))
        if_range = request.headers.get("If-Range")
        if if_range is not None and if_range.strip() != etag:
            rng = None
        if rng == "unsatisfiable":
            headers["Content-Range"] = f"bytes */{len(body)}"
            raise _json_error(web.HTTPRequestRangeNotSatisfiable, "range not satisfiable",
                              headers=headers)
        if rng is not None:
            start, end = rng
            status, part = 206, body[start:end + 1]
            headers["Content-Range"] = f"bytes {start}-{end}/{len(body)}"
    resp = web.StreamResponse(status=status, headers=headers)
    resp.content_type = content_type
    resp.content_length = len(part)
    await resp.prepare(request)
    if request.method != "HEAD":
        await resp.write(part)
        request[BODY_BYTES_KEY] = len(part)
    await resp.write_eof()
    return resp


# ----------------------------------------------------------------------------- handlers


async def handle_catalog(request: web.Request) -> web.StreamResponse:
    cat = request.app[CATALOG_KEY]
    return await _send(request, cat.catalog_bytes, "application/json", cat.catalog_etag,
                       "no-cache")


def _video(request: web.Request) -> tuple[_Catalog, str]:
    cat = request.app[CATALOG_KEY]
    vid = request.match_info["video"]
    if vid not in cat.manifests:
        raise _json_error(web.HTTPNotFound, f"unknown video {vid!r}")
    return cat, vid


async def handle_manifest(request: web.Request) -> web.StreamResponse:
    cat, vid = _video(request)
    data, etag = cat.manifest_bytes[vid]
    return await _send(request, data, "application/json", etag, "no-cache")


async def handle_chunk(request: web.Request) -> web.StreamResponse:
    cat, vid = _video(request)
    vm = cat.manifests[vid]
    rep_name = request.match_info["rep"]
    rep = vm.representations.get(rep_name)
    if rep is None:
        raise _json_error(web.HTTPNotFound, f"video {vid!r} has no representation {rep_name!r}")
    text = request.match_info["chunk"]
    if not _INDEX_RE.match(text):
        raise _json_error(web.HTTPNotFound, f"chunk must be a decimal index, got {text!r}")
    index = int(text)
    if index >= len(rep.chunks):
        raise _json_error(web.HTTPNotFound, f"chunk {index} out of range: {vid!r} has "
                                            f"{len(rep.chunks)} chunks")
    request[REP_KEY] = rep_name
    chunk = rep.chunks[index]
    data = await cat.read(cat.chunk_path(vid, chunk), chunk.bytes)
    ctype = {"h264": "video/h264", "hevc": "video/h265"}.get(rep.codec or "",
                                                             "application/octet-stream")
    return await _send(request, data, ctype, _etag(chunk.sha256),
                       "public, max-age=31536000, immutable", ranges=True)


async def handle_healthz(request: web.Request) -> web.Response:
    cat = request.app[CATALOG_KEY]
    return web.json_response({"status": "ok", "videos": len(cat.manifests)})


async def handle_metrics(request: web.Request) -> web.Response:
    return web.json_response(request.app[METRICS_KEY].to_json())


ROUTES: list[tuple[tuple[str, ...], str,
                   Callable[[web.Request], Awaitable[web.StreamResponse]]]] = [
    (("GET", "HEAD"), "/catalog.json", handle_catalog),
    (("GET", "HEAD"), "/videos/{video}/manifest.json", handle_manifest),
    (("GET", "HEAD"), "/videos/{video}/" + _CHUNK_RE + "/{chunk}", handle_chunk),
    (("GET",), "/healthz", handle_healthz),
    (("GET",), "/metrics", handle_metrics),
]


# ----------------------------------------------------------------------------- middleware


@web.middleware
async def _guard_and_log(request: web.Request, handler) -> web.StreamResponse:
    t0 = time.perf_counter()
    status = 500
    aborted = False
    try:
        raw = request.raw_path.split("?", 1)[0]
        if _BAD_PATH_RE.search(raw) or not raw.startswith("/") or raw.startswith("//"):
            raise _json_error(web.HTTPBadRequest, "malformed or unsafe path")
        limit = request.app[CONFIG_KEY].max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            raise _json_error(web.HTTPRequestEntityTooLarge,
                              f"request body over {limit} bytes", max_size=limit,
                              actual_size=request.content_length)
        if request.body_exists and request.content_length is None:
            body = await request.content.read(limit + 1)
            if len(body) > limit:
                raise _json_error(web.HTTPRequestEntityTooLarge,
                                  f"request body over {limit} bytes", max_size=limit,
                                  actual_size=len(body))
        resp = await handler(request)
        status = resp.status
        if isinstance(resp, web.Response) and request.method != "HEAD" and resp.body:
            request[BODY_BYTES_KEY] = len(resp.body)
        return resp
    except web.HTTPException as exc:
        status = exc.status
        if exc.text and request.method != "HEAD":
            request[BODY_BYTES_KEY] = len(exc.text.encode())
        raise
    except (ConnectionResetError, asyncio.CancelledError):
        aborted = True
        raise
    finally:
        nbytes = int(request.get(BODY_BYTES_KEY, 0))
        rep = request.get(REP_KEY)
        client = request.remote or "unknown"
        request.app[METRICS_KEY].add(client, status, nbytes, rep)
        entry = {"t_s": round(time.time(), 6), "client": client, "method": request.method,
                 "path": request.path, "status": status, "bytes": nbytes,
                 "duration_ms": round((time.perf_counter() - t0) * 1000, 3)}
        if rep is not None:
            entry["representation"] = rep
        if request.headers.get("Range"):
            entry["range"] = request.headers["Range"]
        if aborted:
            entry["aborted"] = True
        log = request.app[LOG_KEY]
        log.write(json.dumps(entry, separators=(",", ":")) + "\n")


# ----------------------------------------------------------------------------- app


def create_app(config: OriginConfig, log_stream: IO[str] | None = None) -> web.Application:
    """Build the origin application for a prepared catalog.

    log_stream: where the JSON access log goes (default: ``config.access_log`` or stdout).
    Raises ``ManifestError`` when the catalog is invalid.
    """
    catalog = _Catalog(Path(config.catalog_dir), config.cache_bytes)
    app = web.Application(middlewares=[_guard_and_log], client_max_size=config.max_body_bytes)
    app[CONFIG_KEY] = config
    app[CATALOG_KEY] = catalog
    app[METRICS_KEY] = _Metrics()
    app[LOG_KEY] = sys.stdout if log_stream is None else log_stream
    for methods, path, handler in ROUTES:
        for method in methods:
            app.router.add_route(method, path, handler)

    async def access_log_file(app: web.Application):
        if log_stream is None and config.access_log is not None:
            # Opened once at start-up, before any request: blocking here costs nothing.
            with open(config.access_log, "a", buffering=1, encoding="utf-8") as fh:  # noqa: ASYNC230
                app[LOG_KEY] = fh
                yield
                fh.flush()
        else:
            yield
            app[LOG_KEY].flush()

    app.cleanup_ctx.append(access_log_file)
    return app


def runner_kwargs(config: OriginConfig) -> dict:
    """Handler limits for ``web.AppRunner``: header line and field sizes."""
    return {"access_log": None, "max_line_size": config.max_field_bytes,
            "max_field_size": config.max_field_bytes}


async def serve(config: OriginConfig, ready: Callable[[str, int], None] | None = None,
                stop: asyncio.Event | None = None) -> None:
    """Serve until SIGINT/SIGTERM (or ``stop`` is set), then shut down gracefully.

    ready: called with (host, port) once listening (port resolved when 0 was asked).
    In-flight responses get ``shutdown_timeout_s`` to finish; the access log is flushed.
    """
    app = create_app(config)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=config.shutdown_timeout_s,
                           **runner_kwargs(config))
    await runner.setup()
    site = web.TCPSite(runner, config.host, config.port, backlog=2048, reuse_address=True)
    try:
        await site.start()
        host, port = runner.addresses[0][:2]
        if ready is not None:
            ready(host, port)
        stop = stop or asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        await runner.cleanup()

