"""The downloader: an aiohttp client to the origin with a bounded number of connections.

``Downloader(origin_url, max_parallel, clock)`` keeps one ``aiohttp.ClientSession`` whose
connector holds at most ``max_parallel`` connections (kept alive between chunks).
``start(path)`` begins a chunk download as its own task and returns a ``Transfer`` that
records, on the caller's clock (session seconds): when the request was sent, the first and
the last body byte, and the bytes received so far (``bytes_done``, updated as data comes
in, with an optional ``on_progress`` callback). ``cancel()`` stops it; ``bytes_done`` then
holds the partial bytes that crossed the link (waste).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Self

import aiohttp

READ_BYTES = 64 * 1024


class DownloadError(RuntimeError):
    """A download failed (HTTP status, connection error, short body)."""


@dataclass
class Transfer:
    """One download in progress or finished. Times are on the downloader's clock (s).

    request_s: request sent. first_byte_s / last_byte_s: body bytes seen (None before).
    bytes_done: body bytes received. status: HTTP status (None before the headers).
    """

    path: str
    request_s: float
    expected_bytes: int | None = None
    first_byte_s: float | None = None
    last_byte_s: float | None = None
    bytes_done: int = 0
    status: int | None = None
    cancelled: bool = False
    task: asyncio.Task | None = field(default=None, repr=False)

    def cancel(self) -> int:
        """Stop the download now; returns the partial bytes received."""
        self.cancelled = True
        if self.task is not None and not self.task.done():
            self.task.cancel()
        return self.bytes_done

    async def result(self) -> bytes:
        """The body; raises ``DownloadError`` on failure, CancelledError if cancelled."""
        assert self.task is not None
        return await self.task


class Downloader:
    """origin_url: ``http://host:port``. max_parallel: connections (= concurrent downloads).
    clock: returns the current time in seconds (default: ``time.monotonic``).
    timeout_s: a download with no progress for this long fails."""

    def __init__(self, origin_url: str, max_parallel: int = 2,
                 clock: Callable[[], float] | None = None, timeout_s: float = 30.0) -> None:
        if max_parallel < 1:
            raise ValueError(f"max_parallel: expected >= 1, got {max_parallel}")
        self.origin_url = origin_url.rstrip("/")
        self.max_parallel = max_parallel
        self.clock = clock or time.monotonic
        self.timeout_s = timeout_s
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Self:
        conn = aiohttp.TCPConnector(limit=self.max_parallel, limit_per_host=self.max_parallel)
        self._session = aiohttp.ClientSession(
            connector=conn, auto_decompress=False,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.timeout_s,
                                          sock_read=self.timeout_s))
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def get_json(self, path: str) -> Any:
        """GET a JSON document (catalog, manifest) from the origin."""
        body = await self.get_bytes(path)
        import json

        try:
            return json.loads(body)
        except ValueError as exc:
            raise DownloadError(f"{self.origin_url}{path}: not JSON ({exc})") from None

    async def get_bytes(self, path: str) -> bytes:
        t = self.start(path)
        return await t.result()

    def start(self, path: str, expected_bytes: int | None = None,
              on_progress: Callable[[Transfer], None] | None = None) -> Transfer:
        """Begin downloading ``path`` (URL path on the origin) as a task."""
        if self._session is None:
            raise RuntimeError("Downloader used outside 'async with'")
        t = Transfer(path=path, request_s=self.clock(), expected_bytes=expected_bytes)
        t.task = asyncio.ensure_future(self._fetch(t, on_progress))
        return t

    async def _fetch(self, t: Transfer, on_progress) -> bytes:
        url = f"{self.origin_url}{t.path}"
        parts: list[bytes] = []
        assert self._session is not None
        try:
            async with self._session.get(url) as resp:
                t.status = resp.status
                if resp.status != 200:
                    text = (await resp.read())[:200].decode("utf-8", "replace")
                    raise DownloadError(f"GET {url}: HTTP {resp.status} {text.strip()}")
                async for data in resp.content.iter_chunked(READ_BYTES):
                    now = self.clock()
                    if t.first_byte_s is None:
                        t.first_byte_s = now
                    t.last_byte_s = now
                    t.bytes_done += len(data)
                    parts.append(data)
                    if on_progress is not None:
                        on_progress(t)
        except aiohttp.ClientError as exc:
            raise DownloadError(f"GET {url}: {type(exc).__name__}: {exc}") from None
        except TimeoutError:
            raise DownloadError(f"GET {url}: no data for {self.timeout_s} s") from None
        body = b"".join(parts)
        if t.expected_bytes is not None and len(body) != t.expected_bytes:
            raise DownloadError(f"GET {url}: {len(body)} bytes, manifest says "
                                f"{t.expected_bytes}")
        return body
