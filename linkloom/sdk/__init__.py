"""linkloom.sdk."""

from __future__ import annotations
