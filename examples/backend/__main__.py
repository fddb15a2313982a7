"""``python -m examples.backend [--host H] [--port 8081] [--idempotency-db FILE] [--no-verify]``"""

from __future__ import annotations

import argparse

import uvicorn

from examples.backend.app import create_app
from linkloom.sdk import InMemoryIdempotencyStore, SqliteIdempotencyStore


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m examples.backend", description="The Link Loom example user backend."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument(
        "--idempotency-db",
        default=None,
        help="SQLite file for replies by Idempotency-Key (default: in memory)",
    )
    parser.add_argument(
        "--no-verify",
        action="store_true",
        help="accept unsigned task requests (local development only)",
    )
    parser.add_argument("--heartbeat", type=float, default=1.0, help="heartbeat interval, seconds")
    args = parser.parse_args(argv)
    store = (
        SqliteIdempotencyStore(args.idempotency_db)
        if args.idempotency_db
        else InMemoryIdempotencyStore()
    )
    app = create_app(
        verify_signatures=not args.no_verify, idempotency=store, heartbeat_interval=args.heartbeat
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")


if __name__ == "__main__":
    main()
