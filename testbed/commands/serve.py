"""``testbed serve``: run the aiohttp origin for a prepared catalog."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from testbed.cli import UserError


def register(sub) -> None:
    p = sub.add_parser(
        "serve",
        help="serve a prepared catalog over HTTP (aiohttp origin)",
        description="Serve catalog.json, video manifests and chunks (with Range, ETag, "
        "/healthz and /metrics) until SIGINT/SIGTERM; in-flight responses finish before exit. "
        "Prints one JSON line {event: listening, host, port, url} on standard output once "
        "listening; every request is logged as one JSON line (standard output, or "
        "--access-log).",
    )
    p.add_argument("--catalog", required=True, type=Path, help="catalog directory")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="TCP port, 0 = any free (default 8080)")
    p.add_argument("--access-log", type=Path, default=None,
                   help="append the JSON access log to this file (default: standard output)")
    p.add_argument("--max-field-bytes", type=int, default=8190,
                   help="longest request line / header field accepted (default 8190)")
    p.add_argument("--max-body-bytes", type=int, default=1024,
                   help="largest request body accepted (default 1024)")
    p.add_argument("--cache-mb", type=float, default=256.0,
                   help="chunk bytes kept in memory, MiB (default 256)")
    p.add_argument("--shutdown-timeout-s", type=float, default=10.0,
                   help="time in-flight requests get to finish on shutdown (default 10)")
    p.set_defaults(func=run)


def run(args) -> int:
    from origin.manifest import ManifestError
    from origin.server import OriginConfig, serve

    if not 0 <= args.port <= 65535:
        raise UserError(f"--port: expected 0..65535, got {args.port}")
    cfg = OriginConfig(catalog_dir=args.catalog, host=args.host, port=args.port,
                       access_log=args.access_log, max_field_bytes=args.max_field_bytes,
                       max_body_bytes=args.max_body_bytes,
                       cache_bytes=int(args.cache_mb * 1024 * 1024),
                       shutdown_timeout_s=args.shutdown_timeout_s)

    def ready(host: str, port: int) -> None:
        shown = f"[{host}]" if ":" in host else host
        print(json.dumps({"event": "listening", "host": host, "port": port,
                          "url": f"http://{shown}:{port}"}), flush=True)

    try:
        asyncio.run(serve(cfg, ready=ready))
    except ManifestError as exc:
        raise UserError(str(exc)) from None
    except OSError as exc:
        raise UserError(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}") \
            from None
    print(json.dumps({"event": "stopped"}), file=sys.stderr, flush=True)
    return 0
