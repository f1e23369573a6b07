"""Origin load benchmark on loopback: requests/s and p50/p99 latency at 100 and 500 clients.

The origin runs as its own process (``testbed serve --port 0``), the load generator in this
one, so they do not share an event loop. Each client is one keep-alive connection that
fetches random chunks back to back. Bounded: ``--requests-per-client`` requests each and
``--time-limit-s`` per level, whichever comes first. Latency = request sent to last body
byte received. Without ``--catalog`` a small catalog is prepared in a temp directory.

The last line printed is the headline: the 500-client p99 latency.

    .venv/bin/python bench/origin_load.py [--catalog DIR] [--clients 100,500]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import numpy as np

from origin import manifest as mf


def _prepare(tmp: Path) -> Path:
    from origin.prepare import PrepareConfig, prepare_catalog

    out = tmp / "catalog"
    prepare_catalog(PrepareConfig(out=out, count=2, duration_s=3.0, codecs=("h264",),
                                  ladder_kbps=(250, 1000), decode_samples=2), progress=False)
    return out


async def _level(base_url: str, urls: list[tuple[str, int]], clients: int, per_client: int,
                 time_limit_s: float, seed: int) -> dict:
    lat_s: list[float] = []
    errors = 0
    nbytes = 0
    deadline = time.monotonic() + time_limit_s
    rng = random.Random(seed)
    plans = [[urls[rng.randrange(len(urls))] for _ in range(per_client)] for _ in range(clients)]
    start = asyncio.Event()

    async def client(session: aiohttp.ClientSession, plan) -> None:
        nonlocal errors, nbytes
        await start.wait()
        for path, size in plan:
            if time.monotonic() > deadline:
                return
            t0 = time.perf_counter()
            try:
                async with session.get(base_url + path) as r:
                    body = await r.read()
                ok = r.status == 200 and len(body) == size
            except (TimeoutError, aiohttp.ClientError):
                ok = False
            lat_s.append(time.perf_counter() - t0)
            if ok:
                nbytes += size
            else:
                errors += 1

    # One connection per client; connections are opened before the clock starts.
    sessions = [aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1, force_close=False),
                                      timeout=aiohttp.ClientTimeout(total=60))
                for _ in range(clients)]
    try:
        await asyncio.gather(*(s.get(base_url + "/healthz") for s in sessions))
        tasks = [asyncio.create_task(client(s, p)) for s, p in zip(sessions, plans, strict=True)]
        t0 = time.perf_counter()
        start.set()
        await asyncio.gather(*tasks)
        wall_s = time.perf_counter() - t0
    finally:
        await asyncio.gather(*(s.close() for s in sessions))
    arr = np.array(lat_s) * 1000
    return {"clients": clients, "requests": len(lat_s), "errors": errors, "wall_s": wall_s,
            "rps": len(lat_s) / wall_s if wall_s > 0 else 0.0,
            "mbps": nbytes * 8 / wall_s / 1e6 if wall_s > 0 else 0.0,
            "p50_ms": float(np.percentile(arr, 50)) if len(arr) else float("nan"),
            "p99_ms": float(np.percentile(arr, 99)) if len(arr) else float("nan")}


async def _run(args, url: str, urls) -> list[dict]:
    out = []
    for i, n in enumerate(args.clients):
        out.append(await _level(url, urls, n, args.requests_per_client, args.time_limit_s,
                                args.seed + i))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--catalog", type=Path, default=None)
    ap.add_argument("--clients", default="100,500",
                    help="comma-separated client counts (default 100,500)")
    ap.add_argument("--requests-per-client", type=int, default=20)
    ap.add_argument("--time-limit-s", type=float, default=30.0)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    args.clients = [int(x) for x in args.clients.split(",")]

    with tempfile.TemporaryDirectory() as tmp:
        catalog = args.catalog or _prepare(Path(tmp))
        cat = mf.load_catalog(catalog, check_videos=True)
        urls = []
        for vid in cat.video_ids:
            vm = cat.load_video(vid)
            for rep in vm.representations.values():
                urls += [(mf.chunk_url(vid, rep.name, c.index), c.bytes) for c in rep.chunks]
        err_path = Path(tmp) / "origin.err"
        with open(err_path, "wb") as err:  # its lifecycle lines are not ours to print
            proc = subprocess.Popen(
                [sys.executable, "-m", "testbed.cli", "serve", "--catalog", str(catalog),
                 "--port", "0", "--access-log", str(Path(tmp) / "access.jsonl")],
                stdout=subprocess.PIPE, stderr=err, text=True)
        try:
            line = proc.stdout.readline()
            if not line:
                raise SystemExit(f"origin did not start: {err_path.read_text().strip()}")
            info = json.loads(line)
            results = asyncio.run(_run(args, info["url"], urls))
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    mean_kb = np.mean([b for _, b in urls]) / 1000
    print(f"origin load on loopback: {len(urls)} chunk URLs, mean chunk {mean_kb:.1f} kB, "
          f"{args.requests_per_client} requests/client, {args.time_limit_s:.0f} s cap per level")
    for r in results:
        print(f"clients={r['clients']:4d} requests={r['requests']:6d} errors={r['errors']} "
              f"wall_s={r['wall_s']:.2f} rps={r['rps']:.0f} goodput_mbps={r['mbps']:.0f} "
              f"p50_ms={r['p50_ms']:.1f} p99_ms={r['p99_ms']:.1f}")
    last = results[-1]
    print(f"p99 latency at {last['clients']} clients: {last['p99_ms']:.1f} ms")
    return 1 if any(r["errors"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
