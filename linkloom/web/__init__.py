"""The web UI: server-rendered pages (Jinja2, autoescape on) mounted at ``/`` by ``create_app``.

Key contracts:
- Pages read the same services as the API (``app.state.services``, through ``http.context``)
  and check the same roles through the same ``Authenticator``; the session is a server-side
  sign-in of an API token, in an HttpOnly SameSite=Strict cookie. ``web`` never imports ``api``.
- Every POST carries a CSRF token (HMAC of the session) and must come from this origin.
- The DAG layout is computed in Python (``layout.py``) and drawn as SVG; one CSS file and one
  small script (SSE live updates, the step drawer, notifications). The visual editor is a
  browser app built from ``frontend/`` (``assets.py``); it edits specs and saves proposals
  through the same services as the API.
- Nothing here writes to the database directly: actions go through the run and proposal
  services, and write the same audit entries as the API.
"""

from __future__ import annotations
