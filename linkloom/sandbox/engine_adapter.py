"""Runs one fixture case on the production engine (``linkloom.engine``) in memory.

Wired to the engine's worker once it lands; until then every case reports that the engine is
not available, so the sandbox plumbing can be exercised with other ``CaseEngine``s.
"""

from __future__ import annotations

from typing import Any

from linkloom.sandbox.errors import SandboxUnavailable


async def run_case(**kwargs: Any) -> Any:
    raise SandboxUnavailable(backend="engine", reason="the flow engine is not wired in yet")
