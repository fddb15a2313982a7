"""What the two HTTP edges share: the REST API (``api``) and the web UI (``web``) both serve
requests on the one FastAPI app ``api.app.create_app`` builds, and both take from here:

* ``http.context``: the request's services (``app.state.services``, the composition root's
  ``wiring.Services``), its actor (the bearer token's) and the audit writer that records what
  that actor did; the API and the web pages write the same entries.
* ``http.feeds``: the feed of run status changes as Server-Sent Events (``/api/v1/stream`` and
  the web UI's ``/live``).

Below ``api`` and ``web``, above ``wiring``: ``web`` imports this package, never ``api``.
"""
