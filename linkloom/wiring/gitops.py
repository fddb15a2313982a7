"""The GitOps pieces of a server whose flows repo mirrors the team's remote (``flows.remote``):
the remote sync, and the forge service (pull requests as proposals) when ``forge.kind`` is set."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from linkloom.flows.gitstore import FlowsRepo
from linkloom.flows.remote import FlowsRemote, RemoteConfig
from linkloom.forges.clients import make_client
from linkloom.forges.models import ForgeKind
from linkloom.forges.service import ForgeConfig, ForgeService
from linkloom.proposals.mirroring import RemoteSync
from linkloom.proposals.service import ProposalService

if TYPE_CHECKING:
    from linkloom.wiring import Services


@dataclass(slots=True, kw_only=True)
class GitOps:
    """The GitOps pieces of a server whose flows repo mirrors the team's remote (None of them
    without ``flows.remote``): the remote sync; the forge service joins it when configured."""

    sync: RemoteSync
    forge: ForgeService | None = None

    async def start(self) -> None:
        await self.sync.start()
        if self.forge is not None:
            await self.forge.start()

    async def stop(self) -> None:
        if self.forge is not None:
            await self.forge.stop()
        await self.sync.stop()


def build_gitops(services: Services, proposals: ProposalService) -> GitOps | None:
    """The remote sync (and forge service) for ``proposals`` when ``flows.remote`` is set."""
    flows = services.settings.flows
    if not flows.remote:
        return None
    config = RemoteConfig.parse(
        flows.remote,
        branch=flows.branch,
        username=flows.remote_username,
        token=flows.remote_token.get_secret_value(),
        ssh_key=flows.ssh_key,
        known_hosts=flows.ssh_known_hosts,
        timeout=flows.git_timeout,
    )
    repo: FlowsRepo = proposals.repo.sync
    sync = RemoteSync(
        service=proposals,
        remote=FlowsRemote(repo, config),
        clock=services.runs.clock,
        poll_seconds=flows.poll_seconds,
        seed_from=flows.seed_from or None,
    )
    proposals.publisher = sync
    services.readiness_details["flows_remote"] = sync.readiness
    return GitOps(sync=sync, forge=_forge_service(services, proposals, sync, config.path))


def _forge_service(
    services: Services, proposals: ProposalService, sync: RemoteSync, remote_path: str
) -> ForgeService | None:
    forge = services.settings.forge
    if not forge.kind:
        return None
    kind = ForgeKind(forge.kind)
    token = forge.token.get_secret_value()
    return ForgeService(
        config=ForgeConfig(
            kind=kind,
            repo=forge.repo or remote_path,
            webhook_secret=forge.webhook_secret.get_secret_value(),
            public_url=services.settings.public_url,
            report_max_attempts=forge.report_max_attempts,
            report_retry_seconds=forge.report_retry_seconds,
        ),
        store=services.forge_links,
        proposals=proposals,
        sync=sync,
        clock=services.runs.clock,
        client=make_client(kind, api_url=forge.api_url, token=token) if token else None,
    )
