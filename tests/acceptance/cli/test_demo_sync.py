"""``loom demo``'s first steps: the flows repo seeded from examples/flows, synced into versions."""

from __future__ import annotations

from pathlib import Path

from linkloom import config, wiring
from linkloom.cli.server import EXAMPLE_FLOWS, local_url, sync_example_flows
from linkloom.store import session


async def test_demo_seeds_the_flows_repo_and_syncs_it_once(tmp_path: Path) -> None:
    settings = config.load_settings(home=tmp_path)
    services = wiring.build_services(settings)
    try:
        await session.upgrade(settings.database_url)
        applied = await sync_example_flows(services)
        examples = sorted(p.name for p in EXAMPLE_FLOWS.iterdir() if (p / "flow.yaml").exists())
        assert applied == len(examples)
        flows = sorted(f.id for f in await services.runs.list_flows())
        assert flows == examples
        version = await services.runs.get_flow_version("daily-report")
        assert version.source == "sync"
        assert version.git_commit
        assert (tmp_path / "flows" / ".git").is_dir()
        await sync_example_flows(services)
        assert [v.version for v in await services.runs.list_flow_versions("daily-report")] == [1]
    finally:
        await services.stop()


def test_local_url_reaches_a_wildcard_bind_through_loopback() -> None:
    settings = config.load_settings(server={"host": "0.0.0.0", "port": 9000})
    assert local_url(settings) == "http://127.0.0.1:9000"
