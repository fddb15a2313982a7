"""The proposal service of the services: flows repo (created when missing, seeded from
``flows.seed_from``), SQL proposal store, SQL audit log (tapped by the notifications), and the
sandbox runner the settings choose (or the one ``build_services`` was given).
``Services.proposals`` builds it on first use."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from linkloom import wiring
from linkloom.flows.gitstore import FlowsRepo
from linkloom.proposals.models import ProposalLimits, ProposalSettings
from linkloom.proposals.service import ProposalService
from linkloom.sandbox import backends
from linkloom.sandbox.bundle import BundleSettings
from linkloom.store.proposals import SqlProposalStore

if TYPE_CHECKING:
    from linkloom.wiring import Services


def build_proposals(services: Services, *, runner: Any = None) -> ProposalService:
    """A new proposal service over ``services`` (``runner``: a sandbox runner for tests)."""
    settings = services.settings
    repo = FlowsRepo(settings.flows_repo)
    if not repo.exists() and not settings.flows.remote:  # a remote's mirror is made at start
        repo.init(seed_from=settings.flows.seed_from or None)
    security = settings.security
    options = ProposalSettings(
        required_approvals=security.required_approvals,
        block_on=tuple(security.block_promotion_on),
        fixture_runs=settings.engine.recent_fixture_runs,
        failed_fixture_runs=settings.engine.recent_failed_fixture_runs,
        policy=wiring.spec_policy(settings),
        secrets=tuple(v.get_secret_value() for v in settings.secrets.values()),
        bundle=BundleSettings(
            on_body_mismatch="replay", shell_enabled=settings.engine.shell_enabled
        ),
        limits=ProposalLimits(**settings.proposals.model_dump()),
    )

    async def select() -> Any:
        return runner if runner is not None else await backends.select_runner(settings.sandbox)

    audit: Any = services.audit
    if services.notifications is not None:
        audit = services.notifications.tap(audit)  # proposal events for notification rules
    if services.personal is not None:
        audit = services.personal.tap(audit)  # proposal events for people's own notifications
    return ProposalService(
        repo=repo,
        store=SqlProposalStore(services.db),
        runs=services.runs,
        clock=services.runs.clock,
        runner=select,
        audit=audit,
        settings=options,
    )
