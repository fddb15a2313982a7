"""The installable app's manifest, service worker and icons on the wired app, and the pages
linking them with the shell's version."""

from __future__ import annotations

import json
import re

from linkloom.access import Role
from linkloom.web import assets
from tests.acceptance.api.api_harness import Api
from tests.acceptance.web.web_client import browser


async def test_manifest_makes_the_ui_installable(api: Api) -> None:
    async with browser(api) as client:  # no session needed: the browser fetches it as is
        found = await client.get("/manifest.webmanifest")
        assert found.status_code == 200
        assert found.headers["content-type"].startswith("application/manifest+json")
        manifest = found.json()
        assert manifest["display"] == "standalone"
        assert manifest["start_url"] == manifest["scope"] == "/"
        sizes = {i["sizes"]: i for i in manifest["icons"]}
        assert {"192x192", "512x512"} <= set(sizes)
        for icon in manifest["icons"]:
            png = await client.get(icon["src"])
            assert png.status_code == 200
            assert png.content.startswith(b"\x89PNG")
            assert "immutable" in png.headers["cache-control"]
        assert (await client.get("/static/icons/nope.png")).status_code == 404


async def test_service_worker_carries_the_shell_version(api: Api) -> None:
    async with browser(api) as client:
        worker = await client.get("/sw.js")
        assert worker.status_code == 200
        assert worker.headers["service-worker-allowed"] == "/"
        assert worker.headers["cache-control"] == "no-cache"
        version = assets.shell_version()
        assert f'const VERSION = "{version}";' in worker.text
        files = json.loads(re.search(r"const SHELL_FILES = (\[.*?\]);", worker.text).group(1))
        assert files == assets.shell_files()
        for url in files:
            assert (await client.get(url)).status_code == 200
        assert "__LOOM_" not in worker.text


async def test_pages_link_the_manifest_and_the_versioned_shell(api: Api) -> None:
    async with browser(api, Role.viewer) as client:
        page = (await client.get("/")).text
        version = assets.shell_version()
        assert '<link rel="manifest" href="/manifest.webmanifest">' in page
        assert f'src="/static/app.js?v={version}"' in page
        assert f'href="/static/app.css?v={version}"' in page
        assert 'data-app="1" data-notes="1"' in page
        assert 'id="offline-banner"' in page
    async with browser(api) as client:
        login = (await client.get("/login")).text
        assert "data-app" not in login  # signed out: no worker, no notes
