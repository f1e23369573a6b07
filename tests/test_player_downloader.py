"""players.downloader against real aiohttp servers on loopback (a trickling one for cancels)."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiohttp import web

from players.downloader import Downloader, DownloadError

BODY = bytes(range(256)) * 400  # 102400 bytes


async def _server(handler_map) -> tuple[web.AppRunner, str]:
    app = web.Application()
    for path, h in handler_map.items():
        app.router.add_get(path, h)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}"


async def _fast(request):
    return web.Response(body=BODY)


async def _slow(request):
    """8 KiB every 50 ms: 100 KiB take ~0.6 s."""
    resp = web.StreamResponse()
    resp.content_length = len(BODY)
    await resp.prepare(request)
    for i in range(0, len(BODY), 8192):
        await resp.write(BODY[i:i + 8192])
        await asyncio.sleep(0.05)
    return resp


async def _missing(request):
    return web.json_response({"error": "no such chunk"}, status=404)


active = 0
peak = 0


async def _counting(request):
    global active, peak
    active += 1
    peak = max(peak, active)
    await asyncio.sleep(0.1)
    active -= 1
    return web.Response(body=b"x" * 1000)


def test_download_records_times_and_bytes():
    async def main():
        runner, url = await _server({"/c": _fast, "/slow": _slow})
        try:
            async with Downloader(url, 2) as dl:
                t = dl.start("/c", expected_bytes=len(BODY))
                body = await t.result()
                s = dl.start("/slow", expected_bytes=len(BODY))
                await s.result()
                return t, body, s
        finally:
            await runner.cleanup()

    t, body, s = asyncio.run(main())
    assert body == BODY and t.bytes_done == len(BODY) and t.status == 200
    assert t.request_s <= t.first_byte_s <= t.last_byte_s
    # the trickled body spans ~0.6 s between first and last byte
    assert s.last_byte_s - s.first_byte_s > 0.4


def test_cancel_keeps_partial_bytes():
    progress = []

    async def main():
        runner, url = await _server({"/slow": _slow})
        try:
            async with Downloader(url, 1) as dl:
                t = dl.start("/slow", expected_bytes=len(BODY),
                             on_progress=lambda tr: progress.append(tr.bytes_done))
                await asyncio.sleep(0.2)
                partial = t.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await t.result()
                # the connection slot is free again: a new download works
                t2 = dl.start("/slow")
                await t2.result()
                return partial, t, t2
        finally:
            await runner.cleanup()

    partial, t, t2 = asyncio.run(main())
    assert 0 < partial < len(BODY)
    assert t.cancelled and t.bytes_done == partial
    assert progress and progress[-1] == partial and progress == sorted(progress)
    assert t2.bytes_done == len(BODY)


def test_http_errors_and_short_bodies_raise():
    async def main():
        runner, url = await _server({"/missing": _missing, "/c": _fast})
        try:
            async with Downloader(url, 2) as dl:
                with pytest.raises(DownloadError, match="HTTP 404"):
                    await dl.start("/missing").result()
                with pytest.raises(DownloadError, match="manifest says 5"):
                    await dl.start("/c", expected_bytes=5).result()
                with pytest.raises(DownloadError, match="not JSON"):
                    await dl.get_json("/c")
        finally:
            await runner.cleanup()

    asyncio.run(main())


def test_parallel_connections_are_bounded():
    global active, peak
    active = peak = 0

    async def main():
        runner, url = await _server({"/n": _counting})
        try:
            async with Downloader(url, 3) as dl:
                ts = [dl.start("/n") for _ in range(9)]
                t0 = time.monotonic()
                await asyncio.gather(*(t.result() for t in ts))
                return time.monotonic() - t0
        finally:
            await runner.cleanup()

    elapsed = asyncio.run(main())
    assert peak == 3
    assert elapsed >= 0.29  # 9 requests of 0.1 s through 3 connections: 3 rounds
