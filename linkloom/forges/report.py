"""What is reported on a pull request for a proposal's current revision: a commit status named
``linkloom`` (pending → success / failure, a one-line description, a link to the proposal page)
and one Markdown comment (checks, plan, per-case diff summary), found again by its marker and
edited in place on later revisions.

``fingerprint`` names what a report says; the forge service sends a report only when it
differs from the last one the forge accepted.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from linkloom.proposals import plan as plans
from linkloom.proposals import render
from linkloom.proposals.models import (
    Check,
    CheckName,
    CheckStatus,
    Proposal,
    ProposalDiff,
    ProposalStatus,
)

CONTEXT = "linkloom"
MARKER = "<!-- linkloom:proposal -->"
DESCRIPTION_LIMIT = 140  # GitHub's limit on a status description
COMMENT_LIMIT = 60_000  # below GitHub's 65,536 characters per comment


@dataclass(frozen=True, slots=True, kw_only=True)
class Report:
    state: str  # pending | success | failure | error (GitHub's words; adapters translate)
    description: str
    url: str
    comment: str

    @property
    def fingerprint(self) -> str:
        digest = hashlib.sha256(self.comment.encode()).hexdigest()[:16]
        return f"{self.state}:{self.description}:{digest}"


def proposal_url(public_url: str, proposal_id: str) -> str:
    return f"{public_url.rstrip('/')}/proposals/{proposal_id}"


def compose(*, proposal: Proposal, checks: Sequence[Check], public_url: str) -> Report:
    """The report of ``proposal``'s current revision from its checks."""
    found = {c.name: c for c in checks if c.revision == proposal.revision}
    state, description = _state(proposal, found)
    url = proposal_url(public_url, proposal.id)
    return Report(
        state=state,
        description=_one_line(description, DESCRIPTION_LIMIT),
        url=url,
        comment=_comment(proposal, found, state=state, description=description, url=url),
    )


def _state(proposal: Proposal, found: Mapping[CheckName, Check]) -> tuple[str, str]:
    if proposal.status is ProposalStatus.STALE:
        return "failure", (
            "stale: production changed the same flows; merge the production branch into yours"
        )
    if proposal.status is ProposalStatus.CLOSED:
        return "error", "the proposal is closed"
    statuses = [found[n].status if n in found else None for n in (CheckName.VALIDATE,
                CheckName.PLAN, CheckName.SANDBOX, CheckName.DIFF)]  # fmt: skip
    for check in found.values():
        if check.status in (CheckStatus.FAILED, CheckStatus.ERROR):
            verb = "failed" if check.status is CheckStatus.FAILED else "could not run"
            first = _first_problem(check)
            return ("failure" if check.status is CheckStatus.FAILED else "error"), (
                f"{check.name.value} {verb}: {first or check.summary}"
            )
    if any(s in (None, CheckStatus.PENDING, CheckStatus.RUNNING) for s in statuses):
        running = next(
            (c.name.value for c in found.values() if c.status is CheckStatus.RUNNING), "checks"
        )
        return "pending", f"revision {proposal.revision}: {running} running"
    diff = found.get(CheckName.DIFF)
    attention = any(c.status is CheckStatus.ATTENTION for c in found.values()) or bool(
        diff and diff.details.get("attention")
    )
    summary = diff.summary if diff else "checks passed"
    if attention and proposal.status is not ProposalStatus.APPROVED:
        # Merging promotes: results that differ from production wait for a reviewer's approval
        # (the promotion policy's rule for `attention`), so branch protection can hold the merge.
        return "pending", f"results change, waiting for approval in Link Loom: {summary}"
    if attention:
        return "success", f"approved: {summary}"
    return "success", f"passed: {summary}"


def _first_problem(check: Check) -> str:
    """``flows/x/flow.yaml:12: message`` of a failed validate check's first error."""
    if check.name is not CheckName.VALIDATE:
        return ""
    for result in (check.details.get("flows") or {}).values():
        for p in result.get("problems") or []:
            if p.get("severity") == "error":
                return f"{p.get('file')}:{p.get('line')}: {p.get('message')}"
    return ""


def _comment(
    proposal: Proposal,
    found: Mapping[CheckName, Check],
    *,
    state: str,
    description: str,
    url: str,
) -> str:
    icon = {"success": "✅", "failure": "❌", "error": "⚠️", "pending": "⏳"}[state]
    lines = [
        MARKER,
        f"### {icon} Link Loom: proposal [`{proposal.id}`]({url}), revision {proposal.revision}",
        "",
        f"**{state}** — {_escape(description)}  ",
        f"Head `{proposal.head_commit[:12]}` · flows: "
        + ", ".join(f"`{f}`" for f in proposal.flows),
        "",
        "| check | status | summary |",
        "| --- | --- | --- |",
    ]
    for name in (CheckName.VALIDATE, CheckName.PLAN, CheckName.SANDBOX, CheckName.DIFF):
        check = found.get(name)
        status = check.status.value if check else "pending"
        lines.append(f"| {name.value} | {status} | {_escape(check.summary if check else '')} |")
    validate = found.get(CheckName.VALIDATE)
    if validate is not None:
        problems = [
            p
            for result in (validate.details.get("flows") or {}).values()
            for p in result.get("problems") or []
        ]
        if problems:
            lines += ["", "#### Problems", ""]
            for p in problems[:50]:
                where = f"{p.get('file')}:{p.get('line')}:{p.get('column')}"
                lines.append(f"- `{where}` {p.get('severity')}: {_escape(str(p.get('message')))}")
    plan = found.get(CheckName.PLAN)
    if plan is not None and plan.details.get("flows"):
        lines += ["", "#### Plan", "", "```", *plans.plan_lines(plan.details["flows"]), "```"]
    diff = found.get(CheckName.DIFF)
    if diff is not None and diff.details.get("flows"):
        lines += ["", "#### Sandbox results against production", ""]
        for flow_id, data in sorted(diff.details["flows"].items()):
            lines += [render.flow_markdown(flow_id, ProposalDiff.from_dict(data)), ""]
    lines += ["", f"[Open the proposal in Link Loom]({url}) for the side-by-side diff."]
    text = "\n".join(lines)
    if len(text) > COMMENT_LIMIT:
        text = text[: COMMENT_LIMIT - 200] + f"\n\n… cut; the whole report: {url}"
    return text


def _escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _one_line(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
