"""linkloom.api.schemas."""

from __future__ import annotations
