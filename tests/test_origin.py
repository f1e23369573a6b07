"""The origin over real loopback sockets: manifests, chunks, ranges, ETags, safety, bursts."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from codec import pixel
from origin import manifest as mf
from origin.prepare import PrepareConfig, prepare_catalog
from origin.server import OriginConfig, create_app, parse_range, runner_kwargs

SECRET = "top-secret-outside-the-catalog"


@pytest.fixture(scope="module")
def catalog(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("origin")
    # A file next to the catalog that no request may ever reach.
    (base / "secret.txt").write_text(SECRET)
    out = base / "cat"
    prepare_catalog(PrepareConfig(out=out, count=2, duration_s=2.5, width=64, height=48,
                                  codecs=tuple(pixel.available_codecs()), ladder_kbps=(80, 300),
                                  jobs=2, decode_samples=2), progress=False)
    return out


@pytest.fixture
def log() -> io.StringIO:
    return io.StringIO()


@pytest.fixture
async def client(aiohttp_client, catalog, log):
    cfg = OriginConfig(catalog_dir=catalog)
    app = create_app(cfg, log_stream=log)
    kw = runner_kwargs(cfg)
    kw.pop("access_log")
    return await aiohttp_client(app, server_kwargs=kw)


def _all_chunks(catalog: Path):
    cat = mf.load_catalog(catalog)
    for vid in cat.video_ids:
        vm = cat.load_video(vid)
        for rep in vm.representations.values():
            for c in rep.chunks:
                yield vid, rep, c


async def test_catalog_and_manifests_served_verbatim(client, catalog):
    r = await client.get("/catalog.json")
    assert r.status == 200
    body = await r.read()
    assert body == (catalog / "catalog.json").read_bytes()
    cat = mf.parse_catalog(body, source="http catalog")
    for vid in cat.video_ids:
        r = await client.get(mf.manifest_url(vid))
        assert r.status == 200 and r.headers["Content-Type"].startswith("application/json")
        data = await r.read()
        assert data == mf.video_manifest_path(catalog, vid).read_bytes()
        etag = r.headers["ETag"]
        r2 = await client.get(mf.manifest_url(vid), headers={"If-None-Match": etag})
        assert r2.status == 304 and await r2.read() == b""
        r3 = await client.get(mf.manifest_url(vid), headers={"If-None-Match": '"other"'})
        assert r3.status == 200


async def test_every_chunk_decodes_and_matches(client, catalog):
    n = 0
    for vid, rep, c in _all_chunks(catalog):
        r = await client.get(mf.chunk_url(vid, rep.name, c.index))
        assert r.status == 200
        data = await r.read()
        assert int(r.headers["Content-Length"]) == len(data) == c.bytes
        assert hashlib.sha256(data).hexdigest() == c.sha256
        assert r.headers["ETag"] == f'"{c.sha256[:32]}"'
        assert r.headers["Accept-Ranges"] == "bytes"
        frames = pixel.decode_pixel_chunk(data, rep.codec)
        assert frames.shape[0] == c.frames
        n += 1
    assert n == 2 * 3 * 2 * len(pixel.available_codecs())


async def test_head_and_etag_on_chunks(client, catalog):
    vid, rep, c = next(_all_chunks(catalog))
    url = mf.chunk_url(vid, rep.name, c.index)
    r = await client.head(url)
    assert r.status == 200
    assert int(r.headers["Content-Length"]) == c.bytes
    assert await r.read() == b""
    r = await client.get(url, headers={"If-None-Match": f'W/"x", "{c.sha256[:32]}"'})
    assert r.status == 304
    r = await client.get(url, headers={"If-None-Match": "*"})
    assert r.status == 304


@pytest.mark.parametrize(
    "header, status, span",
    [
        ("bytes=0-9", 206, (0, 9)),
        ("bytes=10-", 206, (10, None)),
        ("bytes=-20", 206, (-20, None)),
        ("bytes=5-5", 206, (5, 5)),
        ("bytes=0-99999999", 206, (0, None)),      # end past the size is clipped
        ("bytes=-99999999", 206, (0, None)),       # suffix longer than the body: all of it
        ("bytes=-0", 416, None),
        ("bytes=SIZE-", 416, None),                # start at the size: unsatisfiable
        ("bytes=9-5", 200, None),                  # invalid: ignored
        ("bytes=0-1,4-5", 200, None),              # several ranges: ignored, full body
        ("items=0-5", 200, None),                  # other unit: ignored
        ("bytes=abc", 200, None),
    ],
)
async def test_ranges(client, catalog, header, status, span):
    vid, rep, c = next(_all_chunks(catalog))
    full = (mf.video_dir(catalog, vid) / c.path).read_bytes()
    size = len(full)
    r = await client.get(mf.chunk_url(vid, rep.name, c.index),
                         headers={"Range": header.replace("SIZE", str(size))})
    assert r.status == status
    body = await r.read()
    assert int(r.headers["Content-Length"]) == len(body)
    if status == 206:
        start, end = span
        start = start if start >= 0 else size + start
        end = size - 1 if end is None else end
        assert body == full[start:end + 1]
        assert r.headers["Content-Range"] == f"bytes {start}-{end}/{size}"
    elif status == 416:
        assert r.headers["Content-Range"] == f"bytes */{size}"
    else:
        assert body == full


async def test_if_range(client, catalog):
    vid, rep, c = next(_all_chunks(catalog))
    url = mf.chunk_url(vid, rep.name, c.index)
    r = await client.get(url, headers={"Range": "bytes=0-3", "If-Range": f'"{c.sha256[:32]}"'})
    assert r.status == 206
    r = await client.get(url, headers={"Range": "bytes=0-3", "If-Range": '"stale"'})
    assert r.status == 200 and len(await r.read()) == c.bytes


def test_parse_range_unit():
    assert parse_range(None, 10) is None
    assert parse_range("bytes=2-4", 10) == (2, 4)
    assert parse_range("bytes=-3", 10) == (7, 9)
    assert parse_range("bytes=10-", 10) == "unsatisfiable"
    assert parse_range("bytes=0-", 0) == "unsatisfiable"


@pytest.mark.parametrize("path", [
    "/videos/nope/manifest.json",
    "/videos/v000/pixel/h264/999/0",
    "/videos/v000/pixel/h264/80/3",
    "/videos/v000/pixel/h264/80/01",
    "/videos/v000/pixel/h264/80/-1",
    "/videos/v000/pixel/h264/80/1.0",
    "/videos/v000/prompt/local/r8/0",
    "/nothing",
])
async def test_unknown_is_404(client, path):
    r = await client.get(path)
    assert r.status == 404
    if path != "/nothing":
        assert "error" in json.loads(await r.read())


TRAVERSALS = [
    "/videos/../../secret.txt",
    "/videos/v000/../../../secret.txt",
    "/videos/%2e%2e/%2e%2e/secret.txt",
    "/videos/v000/pixel/h264/80/..%2f..%2f..%2f..%2fsecret.txt",
    "/videos/v000/pixel/h264/80/%2E%2E",
    "//secret.txt",
    "/videos/v000/pixel/h264/80/0%00",
    "/videos/v000\\..\\..\\secret.txt",
    "/videos/v000/./manifest.json",
    "http://127.0.0.1/../secret.txt",
    "/etc/passwd",
    "/videos//etc/passwd/manifest.json",
]


async def _raw_request(host: str, port: int, request: bytes) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(request)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), timeout=10)
    writer.close()
    status = int(data.split(b" ", 2)[1])
    return status, data


_opened: list[str] = []
_watch = {"on": False}


def _audit(event, args):
    if _watch["on"] and event == "open" and args and isinstance(args[0], (str, bytes)):
        _opened.append(os.fsdecode(args[0]))


sys.addaudithook(_audit)


async def test_traversal_refused_and_nothing_outside_opened(client, catalog):
    host, port = client.server.host, client.server.port
    _opened.clear()
    _watch["on"] = True
    try:
        for path in TRAVERSALS:
            status, data = await _raw_request(
                host, port, f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                .encode())
            assert 400 <= status < 500, (path, status)
            assert SECRET.encode() not in data
            assert b"root:" not in data
        # Control: the hook does see the origin open a chunk file (fresh app, empty cache).
        vid, rep, c = next(_all_chunks(catalog))
        assert (await client.get(mf.chunk_url(vid, rep.name, c.index))).status == 200
    finally:
        _watch["on"] = False
    assert any(p.endswith(c.path) for p in _opened)
    root = str(catalog.resolve())
    outside = [p for p in _opened if not os.path.abspath(p).startswith(root)]
    assert outside == []


async def test_oversized_headers_and_bodies_refused(client):
    r = await client.get("/healthz", headers={"X-Big": "a" * 20000})
    assert r.status in (400, 413, 431)
    r = await client.get("/healthz", data=b"x" * 5000)
    assert r.status == 413
    r = await client.get("/healthz", data=b"x" * 10)  # a tiny body is harmless
    assert r.status == 200


async def test_burst_of_concurrent_requests(client, catalog):
    chunks = list(_all_chunks(catalog))
    jobs = [chunks[i % len(chunks)] for i in range(250)]

    async def one(session, vid, rep, c):
        async with session.get(client.make_url(mf.chunk_url(vid, rep.name, c.index))) as r:
            data = await r.read()
            return r.status, hashlib.sha256(data).hexdigest() == c.sha256

    # No connection limit and no reuse: 250 sockets open at once.
    conn = aiohttp.TCPConnector(limit=0, force_close=True)
    async with aiohttp.ClientSession(connector=conn) as session:
        results = await asyncio.gather(*(one(session, *j) for j in jobs))
    assert results == [(200, True)] * len(jobs)


async def test_metrics_and_access_log(client, catalog, log):
    vid, rep, c = next(_all_chunks(catalog))
    url = mf.chunk_url(vid, rep.name, c.index)
    for _ in range(3):
        assert (await client.get(url)).status == 200
    assert (await client.get(url, headers={"Range": "bytes=0-9"})).status == 206
    assert (await client.get("/videos/nope/manifest.json")).status == 404
    m = await (await client.get("/metrics")).json()
    assert m["by_representation"][rep.name] == {"requests": 4, "bytes": 3 * c.bytes + 10}
    assert m["requests"] == 5
    assert m["by_status"] == {"200": 3, "206": 1, "404": 1}
    assert list(m["by_client"]) == ["127.0.0.1"]
    lines = [json.loads(x) for x in log.getvalue().splitlines()]
    assert len(lines) >= 5
    first = lines[0]
    assert set(first) >= {"t_s", "client", "method", "path", "status", "bytes", "duration_ms"}
    assert first["path"] == url and first["bytes"] == c.bytes and first["status"] == 200
    assert any(x["status"] == 206 and x["bytes"] == 10 for x in lines)


async def test_healthz(client):
    r = await client.get("/healthz")
    assert (await r.json()) == {"status": "ok", "videos": 2}


def test_bad_catalog_refused(tmp_path):
    with pytest.raises(mf.ManifestError, match="catalog.json: file not found"):
        create_app(OriginConfig(catalog_dir=tmp_path))


def test_serve_cli_graceful_shutdown(catalog, tmp_path):
    logf = tmp_path / "access.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "testbed.cli", "serve", "--catalog", str(catalog), "--port", "0",
         "--access-log", str(logf)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        info = json.loads(line)
        assert info["event"] == "listening"
        vid, rep, c = next(_all_chunks(catalog))

        async def fetch_many():
            async with aiohttp.ClientSession() as s:
                async def one():
                    async with s.get(info["url"] + mf.chunk_url(vid, rep.name, c.index)) as r:
                        return r.status, len(await r.read())
                return await asyncio.gather(*(one() for _ in range(20)))

        assert asyncio.run(fetch_many()) == [(200, c.bytes)] * 20
        proc.send_signal(signal.SIGTERM)
        t0 = time.monotonic()
        rc = proc.wait(timeout=20)
        assert rc == 0 and time.monotonic() - t0 < 15
        assert '"stopped"' in proc.stderr.read()
        entries = [json.loads(x) for x in logf.read_text().splitlines()]
        assert len(entries) == 20 and all(e["status"] == 200 for e in entries)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def test_shutdown_lets_in_flight_response_finish(tmp_path):
    """A response still being transmitted when shutdown starts arrives whole.

    The client reads nothing until after the stop, with a 4 KB receive buffer, so nearly all
    of the 1 MB body is still queued on the server side at that moment. (The handler itself
    has usually returned by then: the kernel's send buffer absorbs up to 4 MB here.)
    """
    import socket

    from origin.server import serve

    big = tmp_path / "big"
    prepare_catalog(PrepareConfig(out=big, count=1, duration_s=1.0, codecs=("h264",),
                                  ladder_kbps=(20000,), jobs=1, decode_samples=1),
                    progress=False)
    vm = mf.load_catalog(big).load_video("v000")
    c = vm.representation("pixel/h264/20000").chunks[0]
    assert c.bytes > 200_000  # larger than what the socket buffers absorb below
    ready: asyncio.Future = asyncio.get_running_loop().create_future()
    stop = asyncio.Event()
    logf = tmp_path / "access.jsonl"
    task = asyncio.create_task(serve(
        OriginConfig(catalog_dir=big, port=0, access_log=logf, shutdown_timeout_s=20),
        ready=lambda h, p: ready.set_result((h, p)), stop=stop))
    host, port = await ready
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a slow reader
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, (host, port))
    await loop.sock_sendall(sock, f"GET {mf.chunk_url('v000', 'pixel/h264/20000', 0)} "
                                  "HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    await asyncio.sleep(0.3)  # the body is now queued behind the slow reader
    stop.set()
    await asyncio.sleep(0.3)
    data = b""
    while True:
        part = await loop.sock_recv(sock, 65536)
        if not part:
            break
        data += part
    sock.close()
    await asyncio.wait_for(task, timeout=20)
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert hashlib.sha256(body).hexdigest() == c.sha256
    entries = [json.loads(x) for x in logf.read_text().splitlines()]
    assert entries[-1]["status"] == 200 and entries[-1]["bytes"] == c.bytes
    # The listening socket is closed: a new connection is refused.
    with pytest.raises(OSError):
        await asyncio.wait_for(asyncio.open_connection(host, port), timeout=5)
