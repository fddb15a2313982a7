"""``python -m linkloom`` runs the ``loom`` CLI."""

from __future__ import annotations

from linkloom.cli.main import main

main()
