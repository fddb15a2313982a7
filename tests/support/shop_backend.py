"""A plain JSON shop API on 127.0.0.1 (a real aiohttp server in a thread), shaped unlike the
examples: a GET with a query string, a POST with a body of the flow's own, and endpoints a
proposal may start calling. Flows call it with ``http`` steps that declare ``query:``/``body:``.

    GET  /rates?region=eu&currency=EUR    → {"region", "currency", "rate"}       (404 unknown)
    POST /orders {"items": [...], ...}    → {"total", "lines", "discount"?}      (discount only
                                            for orders of several lines)
    POST /notify, POST /audit {...}       → {"ok": true, "echo": {...}}

Every request is kept in ``requests`` (method, path, query, body, headers) so a test can check
what production actually sent.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.support.servers import ThreadedAiohttpServer

RATES = {"eu": 1.2, "us": 1.0, "uk": 1.3}


@dataclass
class Sent:
    method: str
    path: str
    query: dict[str, str]
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


class ShopBackend(ThreadedAiohttpServer):
    def __init__(self) -> None:
        super().__init__()
        self.requests: list[Sent] = []

    async def handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        body = json.loads(raw) if raw else None
        self.requests.append(
            Sent(
                method=request.method,
                path=request.path,
                query=dict(request.query),
                body=body,
                headers=dict(request.headers),
            )
        )
        if request.method == "GET" and request.path == "/rates":
            region = request.query.get("region", "")
            if region not in RATES:
                return web.json_response({"error": f"unknown region {region!r}"}, status=404)
            return web.json_response(
                {
                    "region": region,
                    "currency": request.query.get("currency", "EUR"),
                    "rate": RATES[region],
                }
            )
        if request.method == "POST" and request.path == "/orders":
            items = (body or {}).get("items") or []
            total = sum(int(i["qty"]) * float(i["price"]) for i in items)
            answer: dict[str, Any] = {"total": round(total, 2), "lines": len(items)}
            if len(items) > 1:
                answer["discount"] = 0.1
            return web.json_response(answer)
        if request.method == "POST" and request.path in ("/notify", "/audit"):
            return web.json_response({"ok": True, "echo": body})
        return web.json_response({"error": "no such endpoint"}, status=404)

    def sent(self, method: str, path: str) -> list[Sent]:
        return [r for r in self.requests if r.method == method and r.path == path]
