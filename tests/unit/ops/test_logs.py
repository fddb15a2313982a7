from __future__ import annotations

import asyncio
import io
import json
import logging

import pytest
import structlog

from linkloom import logs
from linkloom.config import load_settings

pytestmark = pytest.mark.usefixtures("restore_logging")


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def _lines(buffer: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines()]


def test_logs_json_one_event_per_line_with_bound_ids() -> None:
    out = io.StringIO()
    logs.configure(fmt="json", stream=out)
    log = structlog.get_logger("linkloom.engine.worker")
    with logs.bound(run_id="r-1", flow_id="daily", step_id="fetch", attempt=2):
        log.info("step_finished", status="succeeded", duration_ms=12.5)
    log.info("after_block")

    first, second = _lines(out)
    assert first["event"] == "step_finished"
    assert first["level"] == "info"
    assert first["logger"] == "linkloom.engine.worker"
    assert (first["run_id"], first["flow_id"], first["step_id"], first["attempt"]) == (
        "r-1",
        "daily",
        "fetch",
        2,
    )
    assert first["timestamp"].endswith("Z")
    assert "run_id" not in second


def test_logs_stdlib_and_uvicorn_records_share_the_format_and_context() -> None:
    out = io.StringIO()
    logs.configure(fmt="json", stream=out)
    logging.getLogger("uvicorn.error").addHandler(logging.StreamHandler(io.StringIO()))
    logs.configure(fmt="json", stream=out)  # configure again: uvicorn's own handler is dropped
    with logs.bound(request_id="req-9"):
        logging.getLogger("uvicorn.error").warning("worker %s stopped", 3)

    (line,) = _lines(out)
    assert line == {
        "event": "worker 3 stopped",
        "level": "warning",
        "logger": "uvicorn.error",
        "request_id": "req-9",
        "timestamp": line["timestamp"],
    }
    assert logging.getLogger("uvicorn.error").handlers == []


def test_logs_level_filters_debug() -> None:
    out = io.StringIO()
    logs.configure(fmt="json", level="warning", stream=out)
    structlog.get_logger("x").info("quiet")
    structlog.get_logger("x").warning("loud")
    assert [line["event"] for line in _lines(out)] == ["loud"]


def test_logs_mask_secret_keys_registered_values_and_url_passwords() -> None:
    out = io.StringIO()
    settings = load_settings(
        secrets={"crm": "crm-api-key-123"},
        database={"url": "postgresql+psycopg://loom:db-pass-77@db/loom"},
        security={"signing_key": "signing-key-abc"},
    )
    logs.configure(settings, fmt="json", stream=out)
    logs.register_secret("runtime-token-xyz")
    structlog.get_logger("x").info(
        "call_made",
        token="t0ken",
        headers={"Authorization": "Bearer abc", "X-Loom-Signature": "sig", "Accept": "json"},
        note="sent crm-api-key-123 and runtime-token-xyz with signing-key-abc",
        dsn="postgresql://loom:other-pw@db/loom",
        tokens_used=42,
        items=["db-pass-77"],
    )
    (line,) = _lines(out)
    assert line["token"] == "***"
    assert line["headers"] == {"Authorization": "***", "X-Loom-Signature": "***", "Accept": "json"}
    assert line["note"] == "sent *** and *** with ***"
    assert line["dsn"] == "postgresql://loom:***@db/loom"
    assert line["tokens_used"] == 42
    assert line["items"] == ["***"]


def test_logs_mask_exception_text_in_json() -> None:
    out = io.StringIO()
    logs.configure(fmt="json", stream=out)
    logs.register_secret("hunter2-secret")
    try:
        raise RuntimeError("login with hunter2-secret failed")
    except RuntimeError:
        structlog.get_logger("x").exception("login_failed")
    (line,) = _lines(out)
    assert "RuntimeError: login with *** failed" in line["exception"]
    assert "hunter2" not in out.getvalue()


def test_logs_short_secrets_are_not_masked_inside_text() -> None:
    masker = logs.SecretMasker()
    masker.register("ab", "")
    assert masker.mask_text("abc ab") == "abc ab"


def test_logs_secret_key_names() -> None:
    assert logs.is_secret_key("access_token")
    assert logs.is_secret_key("signing_key")
    assert logs.is_secret_key("Set-Cookie")
    assert not logs.is_secret_key("tokens_used")
    assert not logs.is_secret_key("step_id")


def test_logs_auto_format_is_console_on_a_tty_and_json_otherwise() -> None:
    tty = _Tty()
    logs.configure(fmt="auto", stream=tty)
    structlog.get_logger("x").info("hello", run_id="r1")
    assert "hello" in tty.getvalue()
    assert not tty.getvalue().lstrip().startswith("{")

    pipe = io.StringIO()
    logs.configure(load_settings(), stream=pipe)  # settings say "auto"
    structlog.get_logger("x").info("hello")
    assert json.loads(pipe.getvalue())["event"] == "hello"


def test_logs_unknown_level_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown log level"):
        logs.configure(fmt="json", level="LOUD", stream=io.StringIO())


def test_logs_loggers_created_before_configure_follow_the_new_configuration() -> None:
    early = structlog.get_logger("linkloom.early")
    first, second = io.StringIO(), io.StringIO()
    logs.configure(fmt="json", stream=first)
    early.info("one")  # structlog caches this logger now
    logs.configure(fmt="json", level="ERROR", stream=second)
    early.info("dropped")
    early.error("two")
    assert [line["event"] for line in _lines(first)] == ["one"]
    assert [line["event"] for line in _lines(second)] == ["two"]


def test_logs_positional_arguments_are_interpolated() -> None:
    out = io.StringIO()
    logs.configure(fmt="json", stream=out)
    structlog.get_logger("x").info("worker %s of %d", "w1", 3)
    assert _lines(out)[0]["event"] == "worker w1 of 3"


async def test_logs_nested_bound_blocks_restore_and_tasks_inherit_ids() -> None:
    out = io.StringIO()
    logs.configure(fmt="json", stream=out)
    log = structlog.get_logger("x")

    async def step() -> None:
        with logs.bound(step_id="fetch", attempt=1):
            log.info("inner")

    with logs.bound(run_id="r1", step_id="outer"):
        await asyncio.create_task(step(), name="step:fetch")
        log.info("outer")
    logs.bind(request_id="q1")
    logs.unbind("request_id")
    log.info("after")

    inner, outer, after = _lines(out)
    assert (inner["run_id"], inner["step_id"], inner["attempt"]) == ("r1", "fetch", 1)
    assert (outer["run_id"], outer["step_id"]) == ("r1", "outer")
    assert "attempt" not in outer
    assert not {"run_id", "step_id", "request_id"} & set(after)
    assert logs.bound_ids() == {}


async def test_logs_migrations_name_each_upgrade_without_alembic_preamble(tmp_path) -> None:
    from linkloom.store.session import upgrade

    out = io.StringIO()
    logs.configure(fmt="json", stream=out)
    await upgrade(f"sqlite+aiosqlite:///{tmp_path / 'loom.db'}")

    events = [line["event"] for line in _lines(out)]
    assert any(str(e).startswith("Running upgrade  -> 0001") for e in events)
    assert not [e for e in events if str(e).startswith(("Context impl", "Will assume"))]


async def test_logs_alembic_preamble_is_shown_at_debug(tmp_path) -> None:
    from linkloom.store.session import upgrade

    out = io.StringIO()
    logs.configure(fmt="json", level="debug", stream=out)
    await upgrade(f"sqlite+aiosqlite:///{tmp_path / 'loom.db'}")

    events = [str(line["event"]) for line in _lines(out)]
    assert "Context impl SQLiteImpl." in events
