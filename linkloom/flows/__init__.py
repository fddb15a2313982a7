"""linkloom.flows."""

from __future__ import annotations
