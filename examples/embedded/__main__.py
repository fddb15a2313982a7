"""``python -m examples.embedded --port 8090 --db orders.db``: the orders service (Loom inside)."""

from __future__ import annotations

import argparse

from aiohttp import web

from examples.embedded.app import create_app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--db", default="orders.db", help="SQLite file (service and Loom tables)")
    args = parser.parse_args()
    web.run_app(
        create_app(f"sqlite+aiosqlite:///{args.db}"), host=args.host, port=args.port,
        print=lambda *_: print(f"orders service on http://{args.host}:{args.port}", flush=True),
    )  # fmt: skip


if __name__ == "__main__":
    main()
