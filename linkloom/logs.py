"""Structured logs: one event per line, JSON for machines or a console view for people.

``configure(settings)`` runs once in each composition root (``loom server``, ``loom worker``,
``loom scheduler``, ``create_app``). It routes the standard library's ``logging`` (uvicorn,
SQLAlchemy, alembic, third-party libraries) through the same processors, so every line has the
same shape. Modules log with::

    log = structlog.get_logger(__name__)
    log.info("step_finished", step_id=step_id, status="succeeded", duration_ms=12.5)

Ids travel through a context variable: ``with logs.bound(run_id=…, step_id=…, attempt=…):`` and
every line logged inside (by any module, including library loggers) carries them; asyncio tasks
started inside inherit them. The standard keys are ``run_id``, ``flow_id``, ``step_id``,
``attempt``, ``proposal_id`` and ``request_id``. Bind with these helpers, not with
``structlog.contextvars``: one immutable mapping in one variable costs a fraction of
structlog's one-variable-per-key scheme on every line.

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
from collections.abc import Iterable, Mapping
from contextvars import ContextVar, Token
from functools import lru_cache
from types import MappingProxyType, TracebackType
from typing import Any, TextIO

import structlog
from structlog.types import EventDict, Processor, WrappedLogger

from linkloom.config import Settings

__all__ = [
    "MASK",
    "UVICORN_OPTIONS",
    "SecretMasker",
    "bind",
    "bound",
    "bound_ids",
    "configure",
    "masker",
    "register_secret",
    "reset",
    "unbind",
]

MASK = "***"
# Pass to ``uvicorn.run``/``uvicorn.Config``: keep uvicorn from installing its own handlers
# (configure() routes its loggers here) and from logging each request a second time
# (``api.observability`` writes one ``request_finished`` line per request).
UVICORN_OPTIONS: dict[str, Any] = {"log_config": None, "access_log": False}
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


@lru_cache(maxsize=4096)
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
        kind = type(value)
        if kind is int or kind is float or kind is bool or value is None:
            return value
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
        # The hot path: most values are ids, numbers and short strings; only walk what needs it.
        pattern = self._pattern
        out: EventDict = {}
        for key, value in event_dict.items():
            kind = type(value)
            if kind is int or kind is float or kind is bool or value is None:
                out[key] = value
            elif kind is str:
                if value and is_secret_key(key):
                    out[key] = MASK
                elif pattern is not None or "://" in value:
                    out[key] = self.mask_text(value)
                else:
                    out[key] = value
            else:
                out[key] = self._mask_item(key, value, 0)
        return out


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


_ids: ContextVar[Mapping[str, Any]] = ContextVar("loom_log_ids", default=MappingProxyType({}))


def bind(**ids: Any) -> None:
    """Bind ids (``run_id=…``) to the current context: every later line carries them."""
    _ids.set({**_ids.get(), **ids})


def unbind(*keys: str) -> None:
    """Remove ids bound with ``bind``."""
    current = _ids.get()
    _ids.set({k: v for k, v in current.items() if k not in keys})


def bound_ids() -> Mapping[str, Any]:
    """The ids bound in the current context."""
    return _ids.get()


class bound:  # lower case: it reads like a function, ``with logs.bound(run_id=…):``
    """Bind ids for the duration of a ``with`` block; the previous ids come back after it."""

    __slots__ = ("_ids", "_token")

    def __init__(self, **ids: Any) -> None:
        self._ids = ids
        self._token: Token[Mapping[str, Any]] | None = None

    def __enter__(self) -> None:
        self._token = _ids.set({**_ids.get(), **self._ids})

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._token is not None:
            _ids.reset(self._token)
            self._token = None


def _merge_ids(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    ids = _ids.get()
    if ids:
        for key, value in ids.items():
            event_dict.setdefault(key, value)
    return event_dict


class _Output:
    """What the current ``configure`` chose. Loggers cached by structlog read it at each call,
    so configuring again (tests, a reload) applies to every logger already handed out."""

    def __init__(self) -> None:
        self.stream: TextIO = sys.stderr
        self.level = logging.INFO
        self.chain: list[Processor] = []
        self.lock = threading.Lock()


_output = _Output()


class _Sink:
    """The logger structlog wraps: writes each rendered line to the configured stream."""

    __slots__ = ("name",)

    def __init__(self, name: str = "") -> None:
        self.name = name

    def msg(self, message: str) -> None:
        stream = _output.stream
        try:
            with _output.lock:
                stream.write(message + "\n")
                stream.flush()
        except (OSError, ValueError):  # a closed or broken stream must not break the caller
            pass

    debug = info = warning = warn = error = critical = exception = fatal = log = msg


def _sink_factory(*args: Any) -> _Sink:
    return _Sink(str(args[0]) if args else "")


def _shared_processors() -> list[Processor]:
    return [
        _merge_ids,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]


_Unfiltered: Any = structlog.make_filtering_bound_logger(logging.NOTSET)


class _BoundLogger(_Unfiltered):  # type: ignore[misc]
    """structlog's native bound logger; debug and info return at once when below the level.

    The level lives in ``_output`` rather than in the class, so configuring again reaches
    loggers structlog has already cached.
    """

    def debug(self, event: str, *args: Any, **kw: Any) -> Any:
        if _output.level > logging.DEBUG:
            return None
        return super().debug(event, *args, **kw)

    def info(self, event: str, *args: Any, **kw: Any) -> Any:
        if _output.level > logging.INFO:
            return None
        return super().info(event, *args, **kw)


def _level_gate(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    if _LEVELS.get(method_name, logging.INFO) < _output.level:
        raise structlog.DropEvent
    return event_dict


def _run_chain(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> Any:
    result: Any = event_dict
    for processor in _output.chain:
        result = processor(logger, method_name, result)
    return result


_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "exception": logging.ERROR,
    "critical": logging.CRITICAL,
    "fatal": logging.CRITICAL,
}


def configure(
    settings: Settings | None = None,
    *,
    fmt: str | None = None,
    level: str | None = None,
    stream: TextIO | None = None,
) -> None:
    """Set up structlog and the standard library's logging. Safe to call again (tests, reload).

    structlog events take a direct path (no ``logging.LogRecord``): a line costs a few
    microseconds, and a filtered-out debug call almost nothing. Standard-library records
    (uvicorn, SQLAlchemy…) go through a root handler with the same processors and renderer.

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

    shared = _shared_processors()
    tail: list[Processor]
    if fmt == "json":
        # Tracebacks become text before masking, so secrets in exception messages are masked.
        tail = [
            structlog.processors.format_exc_info,
            masker,
            structlog.processors.JSONRenderer(ensure_ascii=False),
        ]
    else:
        tail = [masker, structlog.dev.ConsoleRenderer(colors=_isatty(out))]

    with _output.lock:
        _output.stream = out
        _output.level = numeric_level
        _output.chain = [_level_gate, *shared, *tail]

    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *tail],
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
    # httpx logs every request at INFO (the engine's hot path); alembic lists its plugins.
    for chatty in ("httpx", "alembic.runtime.plugins"):
        logging.getLogger(chatty).setLevel(max(numeric_level, logging.WARNING))
    migration = logging.getLogger("alembic.runtime.migration")
    migration.removeFilter(_not_alembic_preamble)
    if numeric_level > logging.DEBUG:
        migration.addFilter(_not_alembic_preamble)
    structlog.configure(
        processors=[_run_chain],
        logger_factory=_sink_factory,
        wrapper_class=_BoundLogger,
        cache_logger_on_first_use=True,
    )


def _not_alembic_preamble(record: logging.LogRecord) -> bool:
    """Drop the two lines alembic logs every time it opens a migration context ("Context impl
    SQLiteImpl.", "Will assume non-transactional DDL."): three of each per server start, telling
    the reader nothing. Shown at level DEBUG; "Running upgrade ..." is always kept."""
    return not str(record.msg).startswith(("Context impl ", "Will assume "))


def reset() -> None:
    """Undo ``configure`` (tests): structlog defaults, standard error, INFO, no secrets."""
    structlog.reset_defaults()
    with _output.lock:
        _output.stream = sys.stderr
        _output.level = logging.INFO
        _output.chain = [
            _level_gate,
            *_shared_processors(),
            masker,
            structlog.processors.KeyValueRenderer(),
        ]
    masker.clear()


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
