"""``ProposalService``: every use case of the change flow, and the only place a proposal's status
changes.

    open (files, spec texts or a git ref) → branch ``proposals/<id>`` with real commits
    run_checks: validate → plan → sandbox → diff → ready-for-review (or back to open)
    revise: a new commit on the branch, checks again        rebase: onto main, checks again
    comment / approve / request_changes                     close
    promote (``promotion.py``): merge into main, new flow versions, all-or-nothing
    rollback / sync / history (``promotion.py``)

Key contracts: an author never approves their own proposal; approvals count for the current
revision only; promotion needs what the promotion policy asks (``policy.py``: approvals, owners,
check results) and a non-stale base; every action writes an audit entry with its actor.
"""

from __future__ import annotations

import builtins
import functools
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import structlog
import yaml

from linkloom.access import AuditEntry
from linkloom.engine.records import RunFilter
from linkloom.errors import InvalidInput, LinkloomError
from linkloom.flows import gitstore
from linkloom.flows.spec import SLUG
from linkloom.proposals import checks, errors, limits, policy, promotion
from linkloom.proposals.checks import Outcome, Proposed
from linkloom.proposals.models import (
    CHECK_ORDER,
    Check,
    CheckName,
    CheckStatus,
    Comment,
    PromotionResult,
    Proposal,
    ProposalSettings,
    ProposalStatus,
    Review,
    ReviewDecision,
)
from linkloom.proposals.ports import AuditLog, ProposalStore, Publisher
from linkloom.sandbox import drift, fixtures

if TYPE_CHECKING:
    from linkloom.engine.service import RunService

log = structlog.get_logger(__name__)

BRANCH_PREFIX = "proposals/"
S = ProposalStatus
REVIEWABLE = (S.READY, S.APPROVED, S.CHANGES_REQUESTED)
_REVIEWABLE_DIFF = (CheckStatus.PASSED, CheckStatus.ATTENTION, CheckStatus.FAILED)


_FLOW_ID = re.compile(SLUG)
# Validators use fullmatch: ``$`` also matches before a final newline.
_REPO_FILE = re.compile(r"flows/[a-z0-9][a-z0-9_-]{0,63}(/[A-Za-z0-9._-]{1,128})+")
_CASE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")


def check_flow_id(flow_id: str) -> str:
    """``flow_id`` when it is a flow id (a slug); else ``InvalidInput``."""
    if not isinstance(flow_id, str) or not _FLOW_ID.fullmatch(flow_id):
        raise InvalidInput(
            f"{flow_id!r} is not a flow id: use lowercase letters, digits, '-' and '_'"
        )
    return flow_id


def check_repo_file(path: str) -> str:
    """``path`` when it is a file in a flow's directory (``flows/<id>/…``), else InvalidInput.
    Git's own names (``.git`` in any case) are refused: no git write may see them."""
    git_own = any(p in (".", "..") or p.lower() == ".git" for p in path.split("/"))
    if not _REPO_FILE.fullmatch(path) or git_own:
        raise InvalidInput(
            f"{path!r} is not a flow file: proposals change files under flows/<flow-id>/ "
            "(e.g. flows/daily-report/flow.yaml, flows/daily-report/fixtures/case.yaml)"
        )
    return path


def check_case_name(name: str) -> str:
    """``name`` when it can name a fixture file (``flows/<id>/fixtures/<name>.yaml``)."""
    if not _CASE_NAME.fullmatch(name):
        raise InvalidInput(
            f"{name[:100]!r} is not a fixture case name: use letters, digits, '.', '-' and '_' "
            "(at most 128, not starting with '.' or '-')"
        )
    return name


_REF = re.compile(r"^[A-Za-z0-9._/@{}^~][A-Za-z0-9._/@{}^~-]{0,199}$")


def check_ref(ref: str) -> str:
    if not _REF.fullmatch(ref):
        raise InvalidInput(
            f"{ref!r} is not a git ref: name a branch, tag or commit of the flows repo"
        )
    return ref


def check_text(text: str, what: str) -> str:
    if "\x00" in text:
        raise InvalidInput(f"the {what} contains a NUL character")
    return text


def new_id() -> str:
    return secrets.token_hex(4)


class ProposalService:
    """The proposal lifecycle over a flows repo, a proposal store and the run service."""

    def __init__(
        self,
        *,
        repo: gitstore.FlowsRepo,
        store: ProposalStore,
        runs: RunService,
        clock: Any,
        runner: checks.RunnerFactory,
        audit: AuditLog | None = None,
        settings: ProposalSettings | None = None,
    ) -> None:
        self.repo = gitstore.AsyncFlowsRepo(repo)
        self.store = store
        self.runs = runs
        self.clock = clock
        self.audit_log = audit
        self.settings = settings or ProposalSettings()
        self.budget = limits.AuthorBudget(self.settings.limits, store)
        self._pruned_at: datetime | None = None
        self._opening: set[str] = set()
        self.checker = checks.Checker(
            repo=self.repo, runs=runs, clock=clock, runner=runner, settings=self.settings
        )
        # Remote-backed servers (``proposals.mirroring.RemoteSync``): promotions and rollbacks
        # push to the team's remote, and retry once it is fetched when it moved meanwhile.
        self.publisher: Publisher | None = None

    # ------------------------------------------------------------------ reading

    async def get(self, proposal_id: str) -> Proposal:
        found = await self.store.get(proposal_id)
        if found is None:
            raise errors.ProposalNotFound(proposal_id=proposal_id)
        return await self._refresh_staleness(found)

    async def list(
        self,
        *,
        statuses: Sequence[ProposalStatus] = (),
        flow_id: str | None = None,
        limit: int = 100,
    ) -> builtins.list[Proposal]:
        """Proposals, newest first; unfinished ones are marked stale when production moved."""
        wanted = set(statuses)
        fetch = wanted | {s for s in S if not s.finished} if S.STALE in wanted else wanted
        found = await self.store.list(statuses=tuple(fetch), flow_id=flow_id, limit=limit)
        fresh = [await self._refresh_staleness(p) for p in found]
        return [p for p in fresh if not wanted or p.status in wanted]

    async def checks(
        self, proposal_id: str, *, revision: int | None = None
    ) -> builtins.list[Check]:
        proposal = await self.get(proposal_id)
        found = await self.store.list_checks(proposal_id, revision=revision or proposal.revision)
        order = {name: n for n, name in enumerate(CHECK_ORDER)}
        return sorted(found, key=lambda c: (c.revision, order[c.name]))

    async def check(self, proposal_id: str, name: CheckName) -> Check | None:
        return next((c for c in await self.checks(proposal_id) if c.name is name), None)

    async def reviews(self, proposal_id: str) -> builtins.list[Review]:
        return await self.store.list_reviews(proposal_id)

    async def comments(self, proposal_id: str) -> builtins.list[Comment]:
        return await self.store.list_comments(proposal_id)

    async def approvers(self, proposal: Proposal) -> builtins.list[str]:
        """Reviewers whose latest decision on the current revision is an approval."""
        latest: dict[str, Review] = {}
        for review in await self.store.list_reviews(proposal.id):
            if review.revision == proposal.revision and review.reviewer != proposal.author:
                latest[review.reviewer] = review
        return sorted(r for r, v in latest.items() if v.decision is ReviewDecision.APPROVE)

    async def policies(self, proposal: Proposal) -> dict[str, policy.FlowPolicy]:
        """Each changed flow's promotion policy as ``main`` has it, with the settings'."""
        base = policy.FlowPolicy(
            required_approvals=self.settings.required_approvals,
            block_on=policy.statuses(list(self.settings.block_on), where="the settings"),
        )
        owners_file = None
        for path in policy.CODEOWNERS_PATHS:
            owners_file = await self.repo.file_at(gitstore.MAIN, path)
            if owners_file is not None:
                break
        out: dict[str, policy.FlowPolicy] = {}
        for flow_id in proposal.flows:
            found = base
            path = f"{gitstore.FLOWS_DIR}/{flow_id}/{policy.POLICY_FILE}"
            text = await self.repo.file_at(gitstore.MAIN, path)
            if text is not None:
                try:
                    found = found.stricter(policy.parse(text, where=path))
                except errors.InvalidPolicy as exc:  # fail closed, but keep proposals readable
                    found = found.stricter(policy.FlowPolicy(problems=(exc.message,)))
            if owners_file is not None:
                owners = policy.owners_of(owners_file, gitstore.spec_path(flow_id))
                found = found.stricter(policy.FlowPolicy(required_approvals=0, owners=owners))
            out[flow_id] = found
        return out

    async def decision(self, proposal: Proposal) -> policy.Decision:
        """Whether the current revision may be promoted under the policy, and why not."""
        return policy.decide(
            proposal=proposal,
            checks=await self.store.list_checks(proposal.id, revision=proposal.revision),
            reviews=await self.store.list_reviews(proposal.id),
            policies=await self.policies(proposal),
            check_names=[name.value for name in CHECK_ORDER],
        )

    # ------------------------------------------------------------------ opening and revising

    async def open(
        self,
        *,
        title: str,
        author: str,
        files: Mapping[str, str | None] | None = None,
        specs: Sequence[str] = (),
        ref: str | None = None,
        description: str = "",
        run_checks: bool = True,
    ) -> Proposal:
        """Open a proposal from repo files (``{path: text}``), spec texts or a git ref."""
        if not title.strip():
            raise InvalidInput("a proposal needs a title: pass -m 'what and why'")
        check_text(title + description, "title or description")
        # Everything is checked before the first git write: a refused request writes nothing.
        changes = self._changes(files) | await self.files_for_specs(specs)
        if not changes and not ref:
            raise errors.NothingToPropose()
        start = await self.repo.resolve(check_ref(ref)) if ref else None
        if start is not None:
            sizes = await self.repo.changed_sizes(gitstore.MAIN, start)
            if not any(gitstore.flow_id_of(path) for path in sizes) and not changes:
                raise errors.NothingToPropose()
            await self._admit(author, sizes=sizes, files=changes)
        else:
            await self._admit(author, files=changes)
        proposal_id = new_id()
        branch = BRANCH_PREFIX + proposal_id
        base = await self.repo.head(gitstore.MAIN)
        head = start or base
        if start is not None:
            base = await self.repo.merge_base(gitstore.MAIN, start)
        if changes:
            head = await self.repo.commit_tree(
                head, changes, _message(title, proposal_id, 1, description), author=author
            )
        flows = [c.flow_id for c in await self.repo.changed_flows(gitstore.MAIN, head)]
        if not flows:
            raise errors.NothingToPropose()
        self._opening.add(branch)  # not an orphan for ``prune_branches`` while it has no record
        try:
            await self.repo.create_branch(branch, head)
            proposal = await self._create(proposal_id, title=title, author=author, branch=branch,
                                          base=base, head=head, description=description,
                                          flows=flows)  # fmt: skip
        finally:
            self._opening.discard(branch)
        await self._audit(author, "proposal.open", proposal, flows=flows, ref=ref, head=head)
        log.info("proposal_opened", proposal_id=proposal_id, flows=flows, author=author)
        try:
            await self.prune_branches()
        except Exception:  # housekeeping never fails the request that triggered it
            log.exception("proposal_branch_prune_failed")
        if run_checks:
            proposal = await self.run_checks(proposal_id)
        return proposal

    async def _create(
        self, proposal_id: str, *, title: str, author: str, branch: str, base: str, head: str,
        description: str, flows: builtins.list[str],
    ) -> Proposal:  # fmt: skip
        now = self.clock.now()
        proposal = Proposal(
            id=proposal_id,
            title=title.strip(),
            author=author,
            status=S.OPEN,
            branch=branch,
            base_commit=base,
            head_commit=head,
            description=description,
            flows=tuple(flows),
            base_versions=await self._production_versions(flows),
            created_at=now,
            updated_at=now,
        )
        await self.store.create(proposal)
        return proposal

    async def files_for_specs(self, specs: Sequence[str]) -> dict[str, str]:
        """``{flows/<id>/flow.yaml: text}`` for spec texts, keeping an existing file's name."""
        out: dict[str, str] = {}
        for n, text in enumerate(specs, start=1):
            # Sized before it is parsed: reading YAML takes about a second per megabyte.
            limits.admit_sizes({f"spec {n}": limits.size(text)}, self.settings.limits)
            try:
                data = yaml.safe_load(text)
            except yaml.YAMLError as exc:
                raise InvalidInput(f"a spec is not YAML or JSON: {exc}") from exc
            flow_id = data.get("id") if isinstance(data, dict) else None
            if not isinstance(flow_id, str) or not flow_id:
                raise InvalidInput("every spec needs an 'id' naming its flow")
            check_flow_id(flow_id)
            existing = await self.repo.read_flow(flow_id, gitstore.MAIN)
            out[existing.path if existing else gitstore.spec_path(flow_id)] = text
        return out

    async def spec_file(
        self, flow_id: str, *, ref: str = gitstore.MAIN
    ) -> gitstore.FlowFile | None:
        """The flow's spec file as committed at ``ref`` (a proposal's branch, or main), or None."""
        check_flow_id(flow_id)
        found: gitstore.FlowFile | None = await self.repo.read_flow(flow_id, ref)
        return found

    async def revise(
        self,
        proposal_id: str,
        *,
        actor: str,
        files: Mapping[str, str | None] | None = None,
        specs: Sequence[str] = (),
        message: str = "",
        run_checks: bool = True,
    ) -> Proposal:
        """Commit a new revision on the proposal's branch and run the checks again."""
        proposal = await self.get(proposal_id)
        self._require(proposal, "revise", allowed=tuple(s for s in S if not s.finished))
        changes = self._changes(files) | await self.files_for_specs(specs)
        if not changes:
            raise errors.NothingToPropose()
        revision = proposal.revision + 1
        check_text(message, "message")
        await self._admit(actor, files=changes)
        head = await self.repo.commit_files(
            proposal.branch,
            changes,
            _message(message or f"Revise: {proposal.title}", proposal.id, revision, ""),
            author=actor,
        )
        if head == proposal.head_commit:
            raise InvalidInput("the new revision is identical to the current one")
        flows = [c.flow_id for c in await self.repo.changed_flows(gitstore.MAIN, proposal.branch)]
        proposal = await self._save(
            proposal,
            head_commit=head,
            revision=revision,
            flows=tuple(flows),
            status=S.STALE if proposal.status is S.STALE else S.OPEN,
        )
        await self._audit(actor, "proposal.revise", proposal, revision=revision, head=head)
        if run_checks and proposal.status is not S.STALE:
            proposal = await self.run_checks(proposal_id)
        return proposal

    async def rebase(self, proposal_id: str, *, actor: str, run_checks: bool = True) -> Proposal:
        """Rebase onto main (one squashed commit). Conflicts raise ``MergeConflict``, listed on
        the proposal, and leave its branch as it was."""
        proposal = await self.get(proposal_id)
        self._require(proposal, "rebase", allowed=tuple(s for s in S if not s.finished))
        main = await self.repo.head(gitstore.MAIN)
        try:
            head = await self.repo.rebase(
                proposal.branch,
                message=_message(
                    f"{proposal.title} (rebased)", proposal.id, proposal.revision + 1, ""
                ),
                author=actor,
            )
        except gitstore.MergeConflict as exc:
            await self._save(proposal, status=S.STALE, conflicts=tuple(exc.files))
            await self._audit(actor, "proposal.rebase", proposal, conflicts=list(exc.files))
            raise
        proposal = await self._save(
            proposal,
            base_commit=main,
            head_commit=head,
            revision=proposal.revision + (head != proposal.head_commit),
            base_versions=await self._production_versions(proposal.flows),
            conflicts=(),
            status=S.OPEN,
        )
        await self._audit(actor, "proposal.rebase", proposal, head=head, base=main)
        if run_checks:
            proposal = await self.run_checks(proposal_id)
        return proposal

    # ------------------------------------------------------------------ checks

    async def run_checks(self, proposal_id: str, *, actor: str | None = None) -> Proposal:
        """Run validate → plan → sandbox → diff on the current revision; set the status."""
        proposal = await self.get(proposal_id)
        if proposal.status.finished:
            self._require(proposal, "checks", allowed=())
        if proposal.status is S.STALE:
            raise errors.ProposalStale(proposal_id=proposal.id)
        revision = proposal.revision
        proposal = await self._save(proposal, status=S.VALIDATING)
        saved: dict[CheckName, Check] = {}
        for name in CHECK_ORDER:
            saved[name] = await self._save_check(proposal, name, CheckStatus.PENDING, "")
        flows = await self.checker.proposed_flows(proposal)
        validate = functools.partial(self.checker.validate, proposal)
        outcome = await self._run_check(proposal, saved[CheckName.VALIDATE], validate, flows)
        plan = await self._run_check(proposal, saved[CheckName.PLAN], self.checker.plan, flows)
        green = outcome.status is CheckStatus.PASSED and plan.status is CheckStatus.PASSED
        if green:
            proposal = await self._save(proposal, status=S.SANDBOXING)
            for name in (CheckName.SANDBOX, CheckName.DIFF):
                saved[name] = await self._save_check(
                    proposal, name, CheckStatus.RUNNING, "", started=True
                )
            try:
                sandbox, diffed = await self.checker.sandbox_and_diff(proposal, flows)
            except Exception as exc:  # a bug in a check must not leave the proposal stuck
                log.exception("proposal_check_crashed", proposal_id=proposal.id)
                sandbox = checks.Outcome(status=CheckStatus.ERROR, summary=f"internal error: {exc}")
                diffed = checks.Outcome(status=CheckStatus.SKIPPED, summary="the sandbox failed")
            for name, result in ((CheckName.SANDBOX, sandbox), (CheckName.DIFF, diffed)):
                await self._finish_check(saved[name], result)
            # The diff's verdict (failed, attention) is for reviewers and the promotion policy:
            # the proposal is reviewable once the sandbox ran and the diff could be computed.
            green = sandbox.status is CheckStatus.PASSED and diffed.status in _REVIEWABLE_DIFF
        else:
            for name in (CheckName.SANDBOX, CheckName.DIFF):
                await self._finish_check(
                    saved[name],
                    checks.Outcome(status=CheckStatus.SKIPPED, summary="an earlier check failed"),
                )
        current = await self.get(proposal_id)
        if current.revision != revision or current.status.finished:
            return current  # a newer revision (or a close) arrived meanwhile: its checks decide
        proposal = await self._save(current, status=S.READY if green else S.OPEN)
        await self._audit(
            actor or "loom", "proposal.check", proposal, revision=revision, green=green
        )
        log.info("proposal_checked", proposal_id=proposal.id, green=green, revision=revision)
        return proposal

    async def _run_check(
        self, proposal: Proposal, check: Check, run: Any, flows: builtins.list[Proposed]
    ) -> Outcome:
        check = replace(check, status=CheckStatus.RUNNING, started_at=self.clock.now())
        await self.store.save_check(check)
        try:
            outcome: checks.Outcome = await run(flows)
        except Exception as exc:  # report, never leave a check running forever
            log.exception("proposal_check_crashed", proposal_id=proposal.id, check=check.name)
            outcome = checks.Outcome(status=CheckStatus.ERROR, summary=f"internal error: {exc}")
        await self._finish_check(check, outcome)
        return outcome

    async def _save_check(
        self, proposal: Proposal, name: CheckName, status: CheckStatus, summary: str, *,
        started: bool = False,
    ) -> Check:  # fmt: skip
        check = Check(
            id=f"{proposal.id}-r{proposal.revision}-{name.value}",
            proposal_id=proposal.id,
            revision=proposal.revision,
            name=name,
            status=status,
            summary=summary,
            started_at=self.clock.now() if started else None,
        )
        await self.store.save_check(check)
        return check

    async def _finish_check(self, check: Check, outcome: Outcome) -> Check:
        done = replace(
            check,
            status=outcome.status,
            summary=outcome.summary,
            details=outcome.details,
            started_at=check.started_at or self.clock.now(),
            finished_at=self.clock.now(),
        )
        await self.store.save_check(done)
        return done

    # ------------------------------------------------------------------ review

    async def comment(self, proposal_id: str, *, author: str, body: str) -> Comment:
        proposal = await self.get(proposal_id)
        if not body.strip():
            raise InvalidInput("the comment is empty")
        comment = Comment(
            id=secrets.token_hex(8),
            proposal_id=proposal.id,
            author=author,
            body=body,
            at=self.clock.now(),
        )
        await self.store.add_comment(comment)
        await self._audit(author, "proposal.comment", proposal, comment_id=comment.id)
        return comment

    async def approve(self, proposal_id: str, *, reviewer: str, comment: str = "") -> Proposal:
        """Approve the current revision; refused for the proposal's own author."""
        proposal = await self.get(proposal_id)
        if reviewer == proposal.author:
            await self._audit(reviewer, "proposal.approve_refused", proposal, reason="self")
            raise errors.SelfApproval(actor=reviewer, proposal_id=proposal.id)
        if proposal.status is S.STALE:
            raise errors.ProposalStale(proposal_id=proposal.id)
        self._require(proposal, "approve", allowed=REVIEWABLE)
        await self._review(proposal, reviewer, ReviewDecision.APPROVE, comment)
        approvers = await self.approvers(proposal)
        blocked = await self._changes_requested(proposal)
        decision = await self.decision(proposal)
        status = S.APPROVED if decision.approved else S.CHANGES_REQUESTED if blocked else S.READY
        proposal = await self._save(proposal, status=status)
        await self._audit(
            reviewer, "proposal.approve", proposal, revision=proposal.revision, approvers=approvers
        )
        return proposal

    async def request_changes(
        self, proposal_id: str, *, reviewer: str, comment: str = ""
    ) -> Proposal:
        proposal = await self.get(proposal_id)
        self._require(proposal, "request changes", allowed=(*REVIEWABLE, S.STALE))
        await self._review(proposal, reviewer, ReviewDecision.REQUEST_CHANGES, comment)
        if proposal.status is not S.STALE:
            proposal = await self._save(proposal, status=S.CHANGES_REQUESTED)
        await self._audit(reviewer, "proposal.request_changes", proposal, comment=comment)
        return proposal

    async def _review(
        self, proposal: Proposal, reviewer: str, decision: ReviewDecision, comment: str
    ) -> None:
        await self.store.add_review(
            Review(
                id=secrets.token_hex(8),
                proposal_id=proposal.id,
                reviewer=reviewer,
                decision=decision,
                revision=proposal.revision,
                comment=comment,
                at=self.clock.now(),
            )
        )

    async def _changes_requested(self, proposal: Proposal) -> bool:
        latest: dict[str, Review] = {}
        for review in await self.store.list_reviews(proposal.id):
            if review.revision == proposal.revision:
                latest[review.reviewer] = review
        return any(r.decision is ReviewDecision.REQUEST_CHANGES for r in latest.values())

    async def close(self, proposal_id: str, *, actor: str, reason: str = "") -> Proposal:
        proposal = await self.get(proposal_id)
        self._require(proposal, "close", allowed=tuple(s for s in S if not s.finished))
        proposal = await self._save(proposal, status=S.CLOSED)
        await self._audit(actor, "proposal.close", proposal, reason=reason)
        return proposal

    async def prune_branches(self, *, force: bool = False) -> builtins.list[str]:
        """Delete the branches of proposals closed longer than ``branch_retention_days`` ago
        (and of branches no proposal record names, from before refused requests wrote
        nothing), keeping the records; then let git drop what no ref reaches. Runs after a
        proposal opens, at most once per hour (or per retention period when shorter)."""
        days = self.settings.limits.branch_retention_days
        if days is None:
            return []
        now = self.clock.now()
        keep = timedelta(days=days)
        recent = self._pruned_at is not None and now - self._pruned_at < min(keep, limits.HOUR)
        if recent and not force:
            return []
        self._pruned_at = now
        pruned: list[str] = []
        for branch in await self.repo.branches(BRANCH_PREFIX):
            proposal = await self.store.get(branch.removeprefix(BRANCH_PREFIX))
            if proposal is None:  # an orphan: older servers left one per refused request
                if branch in self._opening or now - await self.repo.commit_time(branch) < keep:
                    continue
            elif proposal.status is not S.CLOSED or (proposal.updated_at or now) > now - keep:
                continue
            await self.repo.delete_branch(branch)
            pruned.append(branch)
            if proposal is not None:
                proposal = await self._save(proposal, branch_pruned_at=now)
                await self._audit("loom", "proposal.branch_pruned", proposal, branch=branch,
                                  head=proposal.head_commit)  # fmt: skip
        if pruned:
            await self.repo.collect_garbage()
            log.info("proposal_branches_pruned", branches=pruned)
        return pruned

    # ------------------------------------------------------------------ promotion

    async def promote(self, proposal_id: str, *, actor: str) -> Proposal:
        """Merge an approved proposal into main and make its specs the production versions
        (``promotion.promote``, all-or-nothing), then record it as promoted.

        Raises:
            ProposalStale, InvalidTransition, NotPromotable, MergeConflict, PromotionFailed.
        """

        async def attempt() -> Proposal:
            proposal = await self.get(proposal_id)
            if proposal.status is S.STALE:
                raise errors.ProposalStale(proposal_id=proposal.id)
            if proposal.status.finished:
                self._require(proposal, "promote", allowed=())
            decision = await self.decision(proposal)
            approvers = list(decision.approvers)
            reasons = list(decision.reasons)
            if proposal.status is not S.APPROVED and not reasons:
                reasons.append(f"its status is {proposal.status.value}, not approved")
            if reasons:
                raise errors.NotPromotable(
                    proposal_id=proposal.id, reasons="; ".join(dict.fromkeys(reasons))
                )
            result = await promotion.promote(self, proposal, approvers=approvers, actor=actor)
            promoted = await self._save(
                proposal,
                status=S.PROMOTED,
                promoted_commit=result.commit,
                promoted_versions=result.versions,
            )
            await self._audit(actor, "proposal.promote", promoted, **result.to_dict())
            for flow_id, version in result.versions.items():
                await self.audit(
                    actor, "flow.promote", "flow", flow_id, version=version,
                    commit=result.commit, proposal=proposal.id,
                )  # fmt: skip
            log.info(
                "proposal_promoted",
                proposal_id=proposal.id,
                commit=result.commit,
                versions=result.versions,
            )
            return promoted

        return await (self.publisher.guard(attempt) if self.publisher else attempt())

    async def rollback(self, flow_id: str, *, to_version: int, actor: str) -> PromotionResult:
        async def attempt() -> PromotionResult:
            return await promotion.rollback(
                self, check_flow_id(flow_id), to_version=to_version, actor=actor
            )

        return await (self.publisher.guard(attempt) if self.publisher else attempt())

    async def mark_promoted(
        self, proposal_id: str, *, commit: str, versions: dict[str, int], actor: str, via: str
    ) -> Proposal:
        """Record a promotion that happened outside Link Loom (a pull request merged on the
        forge, imported from the remote): the proposal is promoted as ``commit``."""
        proposal = await self.get(proposal_id)
        if proposal.status.finished:
            return proposal
        promoted = await self._save(
            proposal, status=S.PROMOTED, promoted_commit=commit, promoted_versions=versions
        )
        await self._audit(actor, "proposal.promote", promoted, commit=commit, versions=versions,
                          via=via)  # fmt: skip
        for flow_id, version in versions.items():
            await self.audit(actor, "flow.promote", "flow", flow_id, version=version,
                             commit=commit, proposal=proposal.id, via=via)  # fmt: skip
        return promoted

    async def revise_to(
        self, proposal_id: str, *, head: str, actor: str, run_checks: bool = True
    ) -> Proposal:
        """A new revision whose head is the commit ``head`` (a pull request's new head, pushed
        or force-pushed): the branch moves there and the checks run again."""
        proposal = await self.get(proposal_id)
        self._require(proposal, "revise", allowed=tuple(s for s in S if not s.finished))
        head = await self.repo.resolve(check_ref(head))
        if head == proposal.head_commit:
            return proposal
        flows = [c.flow_id for c in await self.repo.changed_flows(gitstore.MAIN, head)]
        if not flows:
            raise errors.NothingToPropose()
        await self._admit(actor, sizes=await self.repo.changed_sizes(gitstore.MAIN, head))
        await self.repo.move_branch(proposal.branch, head, expected=proposal.head_commit)
        base = await self.repo.merge_base(gitstore.MAIN, head)
        proposal = await self._save(
            proposal,
            head_commit=head,
            base_commit=base,
            revision=proposal.revision + 1,
            flows=tuple(flows),
            base_versions=await self._production_versions(flows),
            conflicts=(),
            status=S.OPEN,
        )
        await self._audit(actor, "proposal.revise", proposal, revision=proposal.revision, head=head)
        if run_checks:
            proposal = await self.run_checks(proposal_id)
        return proposal

    async def sync(self, *, actor: str) -> dict[str, Any]:
        return await promotion.sync(self, actor=actor)

    async def history(self, flow_id: str) -> builtins.list[dict[str, Any]]:
        return await promotion.history(self, check_flow_id(flow_id))

    # ------------------------------------------------------------------ fixtures

    async def export_fixture(self, run_id: str, *, name: str | None = None) -> fixtures.FixtureCase:
        """A production run as a scrubbed fixture case (``loom fixtures export``)."""
        run = await self.runs.get_run(run_id)
        case = fixtures.case_from_run(
            run=run,
            steps=await self.runs.list_steps(run_id),
            exchanges=await self.runs.list_exchanges(run_id),
            secrets=self.settings.secrets,
        )
        return replace(case, name=check_case_name(name)) if name else case

    async def check_fixtures(
        self, flow_id: str, *, runs: int = 20
    ) -> builtins.list[drift.DriftReport]:
        """Each repo fixture of the flow against recent production exchanges (oldest first)."""
        texts = await self.repo.fixture_files(check_flow_id(flow_id), gitstore.MAIN)
        recent: list[Any] = []
        page = await self.runs.list_runs(RunFilter(flow_id=flow_id), limit=runs)
        for run in reversed(page.items):
            if not getattr(run, "sandbox", False):
                recent.extend(await self.runs.list_exchanges(run.id))
        return [
            drift.check_drift(case, recent, secrets=self.settings.secrets)
            for case in fixtures.cases_from_texts(texts)
        ]

    # ------------------------------------------------------------------ helpers

    @staticmethod
    def _changes(files: Mapping[str, str | None] | None) -> dict[str, str | None]:
        out: dict[str, str | None] = {}
        for path, text in (files or {}).items():
            if text is not None and not isinstance(text, str):
                raise InvalidInput(f"the content of {path!r} must be text (or null to delete)")
            out[check_repo_file(path)] = text
        return out

    async def _admit(
        self,
        author: str,
        *,
        files: Mapping[str, str | None] | None = None,
        sizes: Mapping[str, int] | None = None,
    ) -> None:
        """Refuse a change beyond the limits (``proposals.limits``) before anything is written;
        charge the author's hourly budget when it is admitted."""
        limit = self.settings.limits
        limits.admit(files or {}, limit)
        merged = {**(sizes or {}), **{p: limits.size(t) for p, t in (files or {}).items()}}
        total = limits.admit_sizes(merged, limit)
        await self.budget.spend(author, total, now=self.clock.now())

    async def _production_versions(self, flows: Sequence[str]) -> dict[str, int]:
        out: dict[str, int] = {}
        for flow_id in flows:
            try:
                out[flow_id] = (await self.runs.get_flow(flow_id)).current_version
            except LinkloomError:
                continue  # a new flow
        return out

    async def _production_moved(self, proposal: Proposal) -> bool:
        """Whether any flow's production spec differs from the one at the proposal's base (a
        restore of the same content, e.g. an undone promotion, is not a move)."""
        current = await self._production_versions(proposal.flows)
        for flow_id in proposal.flows:
            base, now = proposal.base_versions.get(flow_id), current.get(flow_id)
            if base == now:
                continue
            if base is None or now is None:
                return True
            old = await self.runs.get_flow_version(flow_id, base)
            new = await self.runs.get_flow_version(flow_id, now)
            if old.content_hash != new.content_hash:
                return True
        return False

    async def _refresh_staleness(self, proposal: Proposal) -> Proposal:
        """Mark an unfinished proposal stale when production moved past its base."""
        if proposal.status.finished or proposal.status is S.STALE:
            return proposal
        moved = await self._production_moved(proposal)
        if not moved:
            changed = await self.repo.changed_files(
                proposal.base_commit, gitstore.MAIN, since_merge_base=False
            )
            moved = any(gitstore.flow_id_of(path) in proposal.flows for path in changed)
        if not moved:
            return proposal
        conflicts = await self.repo.conflicts_with_main(proposal.branch)
        stale = await self._save(proposal, status=S.STALE, conflicts=tuple(conflicts))
        await self._audit("loom", "proposal.stale", stale, conflicts=conflicts)
        log.info("proposal_stale", proposal_id=proposal.id, conflicts=conflicts)
        return stale

    def _require(
        self, proposal: Proposal, action: str, *, allowed: Sequence[ProposalStatus]
    ) -> None:
        if proposal.status not in allowed:
            hint = (
                "it is finished"
                if proposal.status.finished
                else "allowed when " + " or ".join(s.value for s in allowed)
            )
            raise errors.InvalidTransition(
                proposal_id=proposal.id, status=proposal.status.value, action=action, hint=hint
            )

    async def _save(self, proposal: Proposal, **changes: Any) -> Proposal:
        updated = replace(proposal, **changes, updated_at=self.clock.now())
        await self.store.update(updated)
        return updated

    async def _audit(
        self, actor: str | None, action: str, proposal: Proposal, **details: Any
    ) -> None:
        await self.audit(actor, action, "proposal", proposal.id, **details)

    async def audit(
        self, actor: str | None, action: str, object_type: str, object_id: str, **details: Any
    ) -> None:
        if self.audit_log is None:
            return
        await self.audit_log.record(
            AuditEntry(
                actor=actor,
                action=action,
                object_type=object_type,
                object_id=object_id,
                details={k: v for k, v in details.items() if v is not None},
                at=self.clock.now(),
            )
        )


def _message(title: str, proposal_id: str, revision: int, description: str) -> str:
    body = f"\n\n{description.strip()}" if description.strip() else ""
    return f"{title.strip()}{body}\n\nProposal: {proposal_id}\nRevision: {revision}"
