"""The UI's static files (``web/static``: the pages' stylesheet and script, the icons, the
service worker and the visual editor, built from ``frontend/`` by ``scripts/build-web``) and
their versions.

The editor ships as ``web/static/editor/editor.js`` and ``editor.css``: the wheel carries them,
so an installed server needs no Node. A source checkout builds them once (``scripts/start``
and the tests call ``scripts/build-web``, which skips the build when nothing changed). Their
URLs carry a version (the package version and a hash of the files), so a new server never
serves a stale script from a browser's or the app's cache.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

STATIC = Path(__file__).parent / "static"
EDITOR = STATIC / "editor"
FILES = {"editor.js": "text/javascript", "editor.css": "text/css"}


@dataclass(frozen=True, slots=True, kw_only=True)
class Built:
    """Where the editor's files are, and the version their URLs carry."""

    available: bool
    version: str
    script: str
    stylesheet: str


def package_version() -> str:
    try:
        return metadata.version("linkloom")
    except metadata.PackageNotFoundError:  # a source tree that was never installed
        return "0"


_cache: dict[tuple[float, ...], Built] = {}


def editor() -> Built:
    """The editor's assets as built now (re-read when a rebuild changes them)."""
    paths = [EDITOR / name for name in FILES]
    stamps = tuple(p.stat().st_mtime if p.exists() else -1.0 for p in paths)
    found = _cache.get(stamps)
    if found is None:
        if all(p.exists() for p in paths):
            digest = hashlib.sha256()
            for p in paths:
                digest.update(p.read_bytes())
            version = f"{package_version()}-{digest.hexdigest()[:12]}"
            found = Built(
                available=True,
                version=version,
                script=f"/static/editor/editor.js?v={version}",
                stylesheet=f"/static/editor/editor.css?v={version}",
            )
        else:
            found = Built(available=False, version=package_version(), script="", stylesheet="")
        _cache.clear()
        _cache[stamps] = found
    return found


SHELL = ("app.css", "app.js", "sw.js")
ICONS = ("icon-192.png", "icon-512.png", "maskable-512.png")
_shell: dict[tuple[float, ...], str] = {}


def shell_version() -> str:
    """The installable app's version: the package's and a hash of every file the app shell is
    made of (the pages' stylesheet and script, the service worker, icons, the editor). Any
    change gives a new service worker, which replaces the old shell."""
    paths = [STATIC / n for n in SHELL] + [STATIC / "icons" / n for n in ICONS]
    paths += [EDITOR / name for name in FILES]
    stamps = tuple(p.stat().st_mtime if p.exists() else -1.0 for p in paths)
    found = _shell.get(stamps)
    if found is None:
        digest = hashlib.sha256()
        for p in paths:
            digest.update(p.read_bytes() if p.exists() else b"-")
        found = f"{package_version()}-{digest.hexdigest()[:12]}"
        _shell.clear()
        _shell[stamps] = found
    return found


def shell_files() -> list[str]:
    """The versioned URLs the service worker keeps for offline use (stylesheet and script
    first: its offline page links them)."""
    v = shell_version()
    files = [f"/static/app.css?v={v}", f"/static/app.js?v={v}"]
    files += [f"/static/icons/{n}?v={v}" for n in ICONS]
    return files


def editor_file(name: str) -> Path | None:
    """One of the editor's built files, or None."""
    if name not in FILES:
        return None
    path = EDITOR / name
    return path if path.is_file() else None
