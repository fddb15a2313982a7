"""The example user backend (FastAPI + ``linkloom.sdk``); see ``app.py`` for its endpoints.

``serve(port=0)`` runs it on a thread for tests: ``with serve() as backend: backend.url``.
"""

from __future__ import annotations

from examples.backend.server import RunningBackend, serve

__all__ = ["RunningBackend", "serve"]
