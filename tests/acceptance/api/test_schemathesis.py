"""Property-based run of the OpenAPI spec (schemathesis, in-process via ASGI): no 5xx and no
response that breaks the documented schema, on every operation, as an admin."""

from __future__ import annotations

import asyncio
import concurrent.futures
import shutil
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import checks

from linkloom import config, wiring
from linkloom.access import Role
from linkloom.api.app import create_app
from linkloom.store import session
from linkloom.store.tokens import SqlTokenStore


def _app() -> tuple[Any, str]:
    import tempfile

    home = Path(tempfile.mkdtemp(prefix="loom-schemathesis-"))
    url = f"sqlite+aiosqlite:///{home / 'loom.db'}"

    async def prepare() -> str:
        await session.upgrade(url)
        db = session.Database(url)
        try:
            from datetime import UTC, datetime

            secret, _ = await SqlTokenStore(db).create(
                name="fuzzer", role=Role.admin, now=datetime.now(UTC)
            )
            return secret
        finally:
            await db.dispose()

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        secret = pool.submit(asyncio.run, prepare()).result()
    loom_settings = config.load_settings(
        home=home,
        database={"url": url},
        server={"run_scheduler": False},
        pull={"max_wait": 0.5},  # long polls end well within the fuzzer's read timeout
    )
    services = wiring.build_services(loom_settings)
    app = create_app(loom_settings, services, start_services=False)
    app.state.fuzz_home = home
    return app, secret


# No 5xx; every response matches its documented status, content type, schema and headers.
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.response_headers_conformance,
]
APP, TOKEN = _app()
# The global stream never ends by design (the run stream is covered by its own tests);
# /metrics is Prometheus text, not an API resource; /readyz answers its documented 503 here by
# design, since this app runs no workers (readiness has its own tests in tests/*/ops/).
schema = (
    schemathesis.openapi.from_asgi("/openapi.json", APP)
    .exclude(path="/api/v1/stream")
    .exclude(path="/metrics")
    .exclude(path="/readyz")
)


@pytest.fixture(scope="module", autouse=True)
def _cleanup() -> Any:
    yield
    shutil.rmtree(APP.state.fuzz_home, ignore_errors=True)


@pytest.mark.slow
@schema.parametrize()
@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_schemathesis_api(case: schemathesis.Case) -> None:
    case.call_and_validate(headers={"Authorization": f"Bearer {TOKEN}"}, checks=CHECKS)
