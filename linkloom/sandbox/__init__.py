"""linkloom.sandbox: runs a proposed flow on recorded production traffic, isolated.

Key contracts:
- Fixture cases are scrubbed before they are stored (``scrub.py``); replay matches requests by
  method, normalised URL and canonical body, and an unmatched request fails its step with
  "unrecorded request: METHOD URL" and is listed (``replay.py``).
- Cases run on the production engine (``engine_adapter.py``) with a frozen clock; every backend
  (``docker``, ``process``, ``inprocess``) returns a ``SandboxResult`` naming itself and its
  isolation. What a flow does is data in the result; only a broken backend raises
  ``SandboxUnavailable``.
"""

from __future__ import annotations

# ``loom sandbox serve``'s port: not the server's (8080) nor the example backend's (8081),
# which ``./scripts/start`` runs on the same machine.
DEFAULT_SERVICE_PORT = 8082
