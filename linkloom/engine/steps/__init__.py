"""linkloom.engine.steps."""

from __future__ import annotations
