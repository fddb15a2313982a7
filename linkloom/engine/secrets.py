"""Secrets a flow may read (``{{ secrets.NAME }}``): the values configured in the settings'
``secrets`` (``LOOM_SECRETS__NAME``), behind the engine's ``SecretResolver`` port."""

from __future__ import annotations


class StaticSecrets:
    """A ``SecretResolver`` over a plain dict."""

    def __init__(self, values: dict[str, str] | None = None) -> None:
        self._values = dict(values or {})

    def get(self, name: str) -> str | None:
        return self._values.get(name)

    def names(self) -> list[str]:
        return sorted(self._values)
