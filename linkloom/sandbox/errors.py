"""Errors of the sandbox.

LinkloomError
├── InvalidInput
│   ├── InvalidFixture       a fixture case file cannot be read
│   └── InvalidBundle        a sandbox bundle is malformed
└── Unavailable
    └── SandboxUnavailable   the requested backend (docker, process) cannot run here
"""

from __future__ import annotations

from linkloom.errors import InvalidInput, Unavailable


class InvalidFixture(InvalidInput):
    """Fixture case {name!r} is invalid: {reason}; fix the file or re-export it."""

    code = "invalid_fixture"


class InvalidBundle(InvalidInput):
    """The sandbox bundle is invalid: {reason}."""

    code = "invalid_bundle"


class SandboxUnavailable(Unavailable):
    """Sandbox backend {backend!r} is unavailable: {reason}."""

    code = "sandbox_unavailable"
