"""Ops tests reconfigure process-wide logging; put it back afterwards."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import structlog

from linkloom import logs


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)
    logs.reset()
    structlog.contextvars.clear_contextvars()
