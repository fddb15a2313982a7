"""The orders service: an aiohttp app with its own ``orders`` table that embeds Link Loom.

    POST /orders {"item": "apple", "quantity": 12}  → 201 {"id": 1, "run_id": …}
    GET  /orders/1                  → {"id": 1, …, "status": "priced", "total": 5.4}

Creating an order inserts a row in the service's own table and triggers the ``price-order``
flow on the embedded ``Loom`` (same database, same event loop). A background task listens to
``loom.events()`` and writes each finished run's outputs back into the order row.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from linkloom.embed import Loom

FLOWS = Path(__file__).resolve().parent / "flows"

metadata = sa.MetaData()
orders = sa.Table(
    "orders",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("item", sa.String(100), nullable=False),
    sa.Column("quantity", sa.Integer, nullable=False),
    sa.Column("status", sa.String(20), nullable=False),  # pricing | priced | failed
    sa.Column("total", sa.Float),
    sa.Column("run_id", sa.String(64)),
)

ENGINE = web.AppKey("engine", AsyncEngine)
LOOM = web.AppKey("loom", Loom)
LISTENER = web.AppKey("listener", asyncio.Task)


def create_app(database_url: str) -> web.Application:
    app = web.Application()
    app[ENGINE] = create_async_engine(database_url)
    app.router.add_post("/orders", create_order)
    app.router.add_get("/orders/{order_id}", get_order)
    app.router.add_get("/health", lambda _r: web.json_response({"ok": True}))
    app.cleanup_ctx.append(_lifecycle)
    return app


async def _lifecycle(app: web.Application) -> Any:
    engine = app[ENGINE]
    async with engine.begin() as conn:  # the service's own schema
        await conn.run_sync(metadata.create_all)
    loom = Loom(engine=engine, flows_path=FLOWS)  # Loom's tables beside ours
    await loom.start()
    app[LOOM] = loom
    app[LISTENER] = asyncio.create_task(_record_results(engine, loom))
    yield
    app[LISTENER].cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await app[LISTENER]
    await loom.stop()
    await engine.dispose()


async def _record_results(engine: AsyncEngine, loom: Loom) -> None:
    async for run in loom.events():
        if run.flow_id != "price-order":
            continue
        values: dict[str, Any] = {"status": "failed"}
        if run.status.value == "SUCCEEDED":
            values = {"status": "priced", "total": float(run.outputs["total"])}
        # Match by the order id the run carries: a fast run can finish before create_order has
        # stored its run id on the order.
        order_id = int(run.inputs["order_id"])
        async with engine.begin() as conn:
            await conn.execute(orders.update().where(orders.c.id == order_id).values(**values))


async def create_order(request: web.Request) -> web.Response:
    body = await request.json()
    item, quantity = str(body.get("item", "")), int(body.get("quantity", 1))
    if not item or quantity < 1:
        raise web.HTTPUnprocessableEntity(text="item and a positive quantity are required")
    engine, loom = request.app[ENGINE], request.app[LOOM]
    async with engine.begin() as conn:
        result = await conn.execute(
            orders.insert().values(item=item, quantity=quantity, status="pricing")
        )
        order_id = result.inserted_primary_key[0]
    run = await loom.trigger(
        "price-order", {"order_id": order_id, "item": item, "quantity": quantity}
    )
    async with engine.begin() as conn:
        await conn.execute(orders.update().where(orders.c.id == order_id).values(run_id=run.id))
    return web.json_response({"id": order_id, "run_id": run.id, "status": "pricing"}, status=201)


async def get_order(request: web.Request) -> web.Response:
    order_id = int(request.match_info["order_id"])
    async with request.app[ENGINE].connect() as conn:
        row = (await conn.execute(orders.select().where(orders.c.id == order_id))).first()
    if row is None:
        raise web.HTTPNotFound(text=f"order {order_id} not found")
    return web.json_response(dict(row._mapping))
