"""Structured logs: one event per line, JSON for machines or a console view for people.

``configure(settings)`` runs once in each composition root (``loom server``, ``loom worker``,
``loom scheduler``, ``create_app``). It routes the standard library's ``logging`` (uvicorn,
SQLAlchemy, alembic, third-party libraries) through the same processors, so every line has the
same shape. Modules log with::

    log = structlog.get_logger(__name__)
    log.info("step_finished", step_id=step_id, status="succeeded", duration_ms=12.5)

Ids travel through context variables: ``with logs.bound(run_id=…, step_id=…, attempt=…):`` and
every line logged inside (by any module, including library loggers) carries them. The standard
keys are ``run_id``, ``flow_id``, ``step_id``, ``attempt``, ``proposal_id`` and ``request_id``.

Secrets never reach the output: values of keys that name a credential (``token``,
``password``, ``authorization``, ``signing_key``…) are replaced by ``***``, and every value
registered with ``register_secret`` (``configure`` registers the settings' secrets, signing keys
and database password) is masked wherever it appears in a string, as are passwords in URLs.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TextIO

import structlog
from structlog.contextvars import bind_contextvars, bound_contextvars, unbind_contextvars
from structlog.types import EventDict, Processor, WrappedLogger

from linkloom.config import Settings

__all__ = [
    "MASK",
    "SecretMasker",
    "bind",
    "bound",
    "configure",
    "masker",
    "register_secret",
    "unbind",
]

MASK = "***"
# Secrets shorter than this are not masked inside strings: a two-letter "secret" would
# shred every line. Such values are still masked when they sit under a credential key.
MIN_SECRET_LENGTH = 4
# Loggers whose own handlers would print a second, differently shaped line.
ROUTED_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "sqlalchemy", "alembic", "httpx")

_SECRET_KEY = re.compile(
    r"(^|[_\-.])(token|secret|password|passwd|pwd|authorization|api[_\-]?key|signature|cookie|"
    r"set[_\-]cookie|credentials?|signing[_\-]?key|private[_\-]?key)s?$",
    re.IGNORECASE,
)
_URL_PASSWORD = re.compile(
    r"(?P<scheme>[a-z][a-z0-9+.\-]*://)(?P<user>[^:/@\s]+):(?P<pw>[^@/\s]+)@"
)
_MAX_DEPTH = 8


def is_secret_key(key: str) -> bool:
    """Whether a field named ``key`` holds a credential (``access_token`` yes, ``tokens`` no)."""
    return bool(_SECRET_KEY.search(key))


class SecretMasker:
    """A structlog processor that masks credentials in an event, recursively.

    Registered values are replaced wherever they occur inside strings; values under keys that
    name a credential are replaced whole; ``scheme://user:password@`` loses its password.
    """

    def __init__(self) -> None:
        self._values: frozenset[str] = frozenset()
        self._pattern: re.Pattern[str] | None = None
        self._lock = threading.Lock()

    def register(self, *values: str | None) -> None:
        """Mask these values from now on (empty and very short values are ignored)."""
        fresh = {v for v in values if v and len(v) >= MIN_SECRET_LENGTH}
        with self._lock:
            merged = self._values | fresh
            if merged == self._values:
                return
            self._values = merged
            # Longest first, so a secret that contains another is masked whole.
            ordered = sorted(merged, key=len, reverse=True)
            self._pattern = re.compile("|".join(re.escape(v) for v in ordered))

    def clear(self) -> None:
        """Forget every registered value (tests)."""
        with self._lock:
            self._values = frozenset()
            self._pattern = None

    def mask_text(self, text: str) -> str:
        """``text`` with registered secrets and URL passwords replaced by ``***``."""
        pattern = self._pattern
        if pattern is not None:
            text = pattern.sub(MASK, text)
        if "://" in text:
            text = _URL_PASSWORD.sub(rf"\g<scheme>\g<user>:{MASK}@", text)
        return text

    def mask(self, value: Any, depth: int = 0) -> Any:
        """A copy of ``value`` with every secret masked (dicts, lists and tuples are walked)."""
        if isinstance(value, str):
            return self.mask_text(value)
        if depth >= _MAX_DEPTH:
            return value
        if isinstance(value, Mapping):
            return {k: self._mask_item(k, v, depth) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(self.mask(v, depth + 1) for v in value)
        return value

    def _mask_item(self, key: object, value: Any, depth: int) -> Any:
        if value and isinstance(key, str) and is_secret_key(key):
            return _mask_all(value)
        return self.mask(value, depth + 1)

    def __call__(self, logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
        masked: EventDict = self.mask(event_dict)
        return masked


def _mask_all(value: Any) -> Any:
    """Every leaf of ``value`` masked, the shape kept (``secrets: {name: ***}``)."""
    if isinstance(value, Mapping):
        return {k: _mask_all(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_mask_all(v) for v in value]
    return MASK


masker = SecretMasker()


def register_secret(*values: str | None) -> None:
    """Mask these values in every log line from now on (e.g. a token read at start)."""
    masker.register(*values)


def bind(**ids: Any) -> None:
    """Bind ids (``run_id=…``) to the current context: every later line carries them."""
    bind_contextvars(**ids)


def unbind(*keys: str) -> None:
    """Remove ids bound with ``bind``."""
    unbind_contextvars(*keys)


@contextmanager
def bound(**ids: Any) -> Iterator[None]:
    """Bind ids for the duration of a ``with`` block (restores the previous values after)."""
    with bound_contextvars(**ids):
        yield


def configure(
    settings: Settings | None = None,
    *,
    fmt: str | None = None,
    level: str | None = None,
    stream: TextIO | None = None,
) -> None:
    """Set up structlog and the standard library's logging. Safe to call again (tests, reload).

    Args:
        settings: read ``log.format`` and ``log.level``, and register its secrets for masking.
        fmt: ``json``, ``console`` or ``auto``; overrides the settings.
        level: a level name; overrides the settings.
        stream: where lines go; standard error by default, so command output stays clean.
    """
    if settings is not None:
        register_secret(*settings_secrets(settings))
    fmt = fmt or (settings.log.format if settings else "auto")
    level_name = (level or (settings.log.level if settings else "INFO")).upper()
    numeric_level = logging.getLevelNamesMapping().get(level_name)
    if numeric_level is None:
        raise ValueError(f"unknown log level {level_name!r}; use DEBUG, INFO, WARNING or ERROR")
    out = stream if stream is not None else sys.stderr
    if fmt == "auto":
        fmt = "console" if _isatty(out) else "json"

    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Processor
    final: list[Processor] = [structlog.stdlib.ProcessorFormatter.remove_processors_meta]
    if fmt == "json":
        final += [structlog.processors.format_exc_info, masker]
        renderer = structlog.processors.JSONRenderer(ensure_ascii=False)
    else:
        final += [masker]
        renderer = structlog.dev.ConsoleRenderer(colors=_isatty(out))
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared, processors=[*final, renderer]
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric_level)
    for name in ROUTED_LOGGERS:
        routed = logging.getLogger(name)
        routed.handlers.clear()
        routed.propagate = True
    # httpx logs every request at INFO; that is the engine's hot path.
    logging.getLogger("httpx").setLevel(max(numeric_level, logging.WARNING))
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


def settings_secrets(settings: Settings) -> Iterable[str]:
    """Every secret value in ``settings``: flow secrets, signing keys, the database password."""
    yield from (s.get_secret_value() for s in settings.secrets.values())
    yield settings.security.signing_key.get_secret_value()
    yield from (s.get_secret_value() for s in settings.security.previous_signing_keys)
    match = _URL_PASSWORD.search(settings.database.url)
    if match:
        yield match.group("pw")


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
