"""The composition root: every service is built here from settings (database, run store, run
service, HTTP client, executors, workers, tokens, authenticator, audit, notifications,
scheduler, proposals, GitOps). ``loom server``, ``loom worker``, ``create_app``, ``embed`` and
tests use it; the edges (api, web, cli, embed) receive the ``Services`` and build none
themselves. The proposal service and the GitOps pieces are built on first use
(``Services.proposals``): they open (or create) the flows repo and import git, which a worker
never needs.

    services = build_services(settings)
    await services.start()          # migrate (SQLite by default), start a worker
    run = await services.runs.trigger("daily-report", inputs={})
    await services.stop()

Submodules build the pieces: ``wiring.services`` (``Services``, ``build_services``),
``wiring.storage`` (the database, ``token_store``), ``wiring.proposals``,
``wiring.notifications``, ``wiring.scheduler``, ``wiring.gitops``. This package imports each
only when one of its names is first used, so ``loom token --local``, which needs the token store
alone, does not pay for the engine (aiohttp, httpx) that ``build_services`` imports.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from linkloom.wiring.services import (
        Services,
        build_services,
        make_http_client,
        make_outbound,
        purge_runs,
        retention,
        spec_policy,
    )
    from linkloom.wiring.storage import token_store

__all__ = [
    "Services",
    "build_services",
    "make_http_client",
    "make_outbound",
    "purge_runs",
    "retention",
    "spec_policy",
    "token_store",
]

# Each name above → the submodule that defines it.
_HOME = {name: "services" for name in __all__} | {"token_store": "storage"}


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value  # the next use finds it without coming here
    return value
