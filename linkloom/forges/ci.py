"""CI mode (``loom proposal ci``): a CI job on a pull request's checked-out branch sends the flows
it changes; they become a revision of the proposal keyed by the pull request.

    ci_revision(…)   with a forge service whose remote has the head commit: exactly what the
                     pull request webhook does (the commit itself is the revision); otherwise the
                     sent files are committed on the proposal's branch (opened from main the
                     first time). The same head twice is the same revision, never a new one.
    ci_report(…)     the Markdown summary and the outcome the CLI prints and exits with.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from linkloom.errors import InvalidInput, LinkloomError
from linkloom.forges import report
from linkloom.forges.models import ForgeKind, PullLink
from linkloom.forges.ports import ForgeStore
from linkloom.proposals.models import CheckName, CheckStatus, Proposal, ProposalStatus
from linkloom.proposals.service import ProposalService


@dataclass(frozen=True, slots=True, kw_only=True)
class CiRequest:
    forge: ForgeKind
    repo: str
    number: int
    head: str
    title: str
    author: str  # the Link Loom actor (the CI token's name)
    url: str = ""
    base: str = "main"
    head_ref: str = ""  # the pull request's source branch, when CI knows it
    files: Mapping[str, str | None] | None = None  # flows/… paths the pull request changes


async def ci_revision(
    request: CiRequest, *, proposals: ProposalService, store: ForgeStore, forge: Any, clock: Any
) -> Proposal:
    """The proposal of ``request``'s pull request at its head commit (opened or revised)."""
    if forge is not None and forge.kind is request.forge:
        try:
            found: Proposal = await forge.ci_head(request)
            return found
        except LinkloomError:
            if not request.files:
                raise  # nothing else to go on
    if not request.files:
        raise InvalidInput(
            "send the changed flow files (the server cannot fetch this pull request's head)"
        )
    link = await store.get_link(request.forge, request.repo, request.number)
    now = clock.now()
    if link is None:
        link = PullLink(
            forge=request.forge, repo=request.repo, number=request.number, url=request.url,
            title=request.title, author=request.author, head_sha=request.head, head_ref="",
            base_ref=request.base, created_at=now,
        )  # fmt: skip
    current = await _open_proposal(proposals, link.proposal_id)
    if current is not None and link.head_sha == request.head:
        return current  # the same head: the same revision
    message = f"{request.title} (#{request.number} at {request.head[:12]})"
    if current is None:
        current = await proposals.open(
            title=message, author=request.author, files=dict(request.files),
            description=request.url, run_checks=False,
        )  # fmt: skip
    else:
        with contextlib.suppress(InvalidInput):  # the same files as the current revision
            current = await proposals.revise(
                current.id, actor=request.author, files=dict(request.files), message=message,
                run_checks=False,
            )  # fmt: skip
    await store.save_link(
        replace(link, proposal_id=current.id, head_sha=request.head, updated_at=now)
    )
    return await proposals.run_checks(current.id, actor=request.author)


async def _open_proposal(proposals: ProposalService, proposal_id: str | None) -> Proposal | None:
    if proposal_id is None:
        return None
    try:
        found = await proposals.get(proposal_id)
    except LinkloomError:
        return None
    return None if found.status.finished else found


# The outcome of the checks as ``loom proposal checks --wait`` exits (``cli.proposals.verdict``,
# which the CLI applies to ``statuses``; this copy names the outcome in the server's answer).
OUTCOME_EXIT = {"passed": 0, "failed": 1, "error": 6, "attention": 8, "running": 124}


def outcome(proposal: Proposal, checks: list[Any]) -> str:
    """``passed`` | ``failed`` | ``error`` | ``attention`` | ``running``."""
    if proposal.status in (ProposalStatus.VALIDATING, ProposalStatus.SANDBOXING):
        return "running"
    found = {c.status for c in checks if c.revision == proposal.revision}
    if not found or found & {CheckStatus.PENDING, CheckStatus.RUNNING}:
        return "running"
    if proposal.status is ProposalStatus.STALE or CheckStatus.FAILED in found:
        return "failed"
    if CheckStatus.ERROR in found:
        return "error"
    return "attention" if CheckStatus.ATTENTION in found else "passed"


def statuses(proposal: Proposal, checks: list[Any]) -> list[str]:
    """The current revision's check statuses (``failed`` for a stale proposal's)."""
    found = [c.status.value for c in checks if c.revision == proposal.revision]
    return [*found, "failed"] if proposal.status is ProposalStatus.STALE else found


def problems(checks: list[Any]) -> list[dict[str, Any]]:
    """Every problem the validate check found: ``{file, line, column, severity, message}``."""
    found: list[dict[str, Any]] = []
    for check in checks:
        if check.name is CheckName.VALIDATE:
            for result in (check.details.get("flows") or {}).values():
                found.extend(result.get("problems") or [])
    return found


def summary(proposal: Proposal, checks: list[Any], *, public_url: str) -> str:
    """The same Markdown the pull request comment holds."""
    composed = report.compose(proposal=proposal, checks=checks, public_url=public_url)
    return composed.comment.replace(report.MARKER + "\n", "", 1)
