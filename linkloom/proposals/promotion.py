"""Promotion, rollback and sync: where the flows repo's ``main`` and the flow versions meet.

* ``promote``: merge a proposal's branch into main with a commit naming the proposal and its
  approvers, then store each changed flow's spec as a new version with that ``git_commit``. The
  scheduler reads the current version at each fire, so the next fire uses it; running runs keep
  the version they started with. All-or-nothing: every spec is validated before main moves, and a
  failure while storing versions moves main back and restores the previous versions.
* ``rollback``: a commit on main restoring an earlier version's spec, and a new version with it.
* ``sync``: import main into flow versions (``loom sync``); ``history``: versions with commits.

Each works on a ``Production`` (``ProposalService`` is one). Proposals' statuses are not changed
here: ``ProposalService.promote`` decides whether a proposal may be promoted and records it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from linkloom.errors import LinkloomError
from linkloom.flows import gitstore, loading
from linkloom.flows.spec import FlowSpec
from linkloom.proposals import errors
from linkloom.proposals.models import PromotionResult, Proposal
from linkloom.proposals.ports import Publisher

if TYPE_CHECKING:
    from linkloom.engine.service import RunService

log = structlog.get_logger(__name__)


class Production(Protocol):
    """What promotion works on: the flows repo, the run service that stores flow versions, the
    publisher of main to the team's remote (None without one) and the audit log."""

    @property
    def repo(self) -> gitstore.AsyncFlowsRepo: ...

    @property
    def runs(self) -> RunService: ...

    @property
    def publisher(self) -> Publisher | None: ...

    async def audit(
        self, actor: str | None, action: str, object_type: str, object_id: str, **details: Any
    ) -> None: ...


async def promote(
    service: Production, proposal: Proposal, *, approvers: Sequence[str], actor: str
) -> PromotionResult:
    """Merge a proposal the caller found promotable into main and make its specs the
    production versions.

    Raises:
        NotPromotable, MergeConflict, PromotionFailed.
    """
    repo = service.repo
    # Validate everything before main moves: the specs as the proposal's head has them.
    specs: dict[str, FlowSpec | None] = {}
    for flow_id in proposal.flows:
        found = await repo.read_flow(flow_id, proposal.head_commit)
        specs[flow_id] = None if found is None else _load(found)
    conflicts = await repo.conflicts_with_main(proposal.branch)
    if conflicts:
        raise gitstore.MergeConflict(source=proposal.branch, target=gitstore.MAIN, files=conflicts)
    old_main = await repo.head(gitstore.MAIN)
    message = (
        f"Promote proposal {proposal.id}: {proposal.title}\n\n"
        f"Proposal: {proposal.id} (revision {proposal.revision}, author {proposal.author})\n"
        f"Approved-by: {', '.join(approvers)}\n"
        f"Promoted-by: {actor}"
    )
    merged = await repo.merge(proposal.branch, message, author=actor)
    await _publish(service, old_main=old_main, new_main=merged.sha)
    versions = await _apply(
        service, specs, commit=merged.sha, old_main=old_main, actor=actor, source="promotion",
        what=f"proposal {proposal.id}",
    )  # fmt: skip
    return PromotionResult(commit=merged.sha, versions=versions, approvers=tuple(approvers))


async def rollback(
    service: Production, flow_id: str, *, to_version: int, actor: str
) -> PromotionResult:
    """Promote an earlier version again: a commit on main restoring its spec, a new version.
    ``flow_id`` is a checked flow id."""
    runs = service.runs
    old = await runs.get_flow_version(flow_id, to_version)
    current = await runs.get_flow(flow_id)
    spec = FlowSpec.model_validate(old.spec)
    repo = service.repo
    existing = await repo.read_flow(flow_id, gitstore.MAIN)
    path = existing.path if existing else gitstore.spec_path(flow_id)
    text = None
    if old.git_commit:
        text = await repo.file_at(old.git_commit, path)
        if text is None or _load_text(text, path) is None:
            text = None
    if text is None:
        text = loading.to_canonical_yaml(spec)
    old_main = await repo.head(gitstore.MAIN)
    sha = await repo.commit_files(
        gitstore.MAIN,
        {path: text},
        f"Roll back {flow_id} to version {to_version}\n\n"
        f"Rolled-back-from: version {current.current_version}\nRolled-back-by: {actor}",
        author=actor,
    )
    await _publish(service, old_main=old_main, new_main=sha)
    versions = await _apply(
        service, {flow_id: spec}, commit=sha, old_main=old_main, actor=actor, source="rollback",
        what=f"the rollback of {flow_id}",
    )  # fmt: skip
    result = PromotionResult(commit=sha, versions=versions)
    await service.audit(
        actor, "flow.rollback", "flow", flow_id, to_version=to_version,
        from_version=current.current_version, version=versions.get(flow_id), commit=sha,
    )  # fmt: skip
    return result


async def _publish(service: Production, *, old_main: str, new_main: str) -> None:
    """On a remote-backed server, push main's new head to the team's remote before anything is
    applied; when that fails, main moves back and the error (e.g. ``RemoteMoved``) propagates."""
    if service.publisher is None or old_main == new_main:
        return
    try:
        await service.publisher.publish(old=old_main, new=new_main)
    except BaseException:
        await _undo(service, {}, old_main=old_main, new_main=new_main, actor="loom")
        raise


async def import_commit(
    service: Production, *, commit: str, previous: str, actor: str, source: str, what: str
) -> dict[str, int]:
    """Make ``commit`` (main's head, fetched from the remote) production: every flow changed since
    ``previous`` gets its spec at ``commit`` as a new version. All-or-nothing: an invalid spec or
    a failure while storing moves main back to ``previous`` and raises."""
    repo = service.repo
    try:
        specs: dict[str, FlowSpec | None] = {}
        for change in await repo.changed_flows(previous, commit, since_merge_base=False):
            found = await repo.read_flow(change.flow_id, commit)
            specs[change.flow_id] = None if found is None else _load(found)
    except BaseException:
        await _undo(service, {}, old_main=previous, new_main=commit, actor=actor)
        raise
    return await _apply(
        service, specs, commit=commit, old_main=previous, actor=actor, source=source, what=what
    )


async def _apply(
    service: Production,
    specs: dict[str, FlowSpec | None],
    *,
    commit: str,
    old_main: str,
    actor: str,
    source: str,
    what: str,
) -> dict[str, int]:
    """Store each spec as its flow's current version; on any failure undo all and raise."""
    runs = service.runs
    before: dict[str, int | None] = {}
    done: dict[str, int] = {}
    try:
        for flow_id, spec in specs.items():
            try:
                before[flow_id] = (await runs.get_flow(flow_id)).current_version
            except LinkloomError:
                before[flow_id] = None
            if spec is None:
                if before[flow_id] is not None:
                    await runs.delete_flow(flow_id)
                continue
            version = await runs.apply_flow(spec, source=source, actor=actor, git_commit=commit)
            done[flow_id] = version.version
    except Exception as exc:
        log.exception("promotion_failed", what=what, commit=commit)
        await _undo(service, before, old_main=old_main, new_main=commit, actor=actor)
        raise errors.PromotionFailed(what=what, reason=f"{type(exc).__name__}: {exc}") from exc
    return done


async def _undo(
    service: Production,
    before: dict[str, int | None],
    *,
    old_main: str,
    new_main: str,
    actor: str,
) -> None:
    """Put main and the current versions back as they were (best effort, each part alone)."""
    try:
        # Compare-and-swap: a commit made on main after the promotion stays.
        await service.repo.move_branch(gitstore.MAIN, old_main, expected=new_main)
    except gitstore.RefMoved:
        log.warning("promotion_undo_main_moved", old_main=old_main, promoted=new_main)
    except Exception:
        log.exception("promotion_undo_git_failed", old_main=old_main)
    for flow_id, version in before.items():
        try:
            if version is None:
                try:
                    await service.runs.get_flow(flow_id)
                except LinkloomError:
                    continue
                await service.runs.delete_flow(flow_id)
                continue
            current = (await service.runs.get_flow(flow_id)).current_version
            if current != version:
                await service.runs.rollback(flow_id, version=version, actor=actor)
        except Exception:
            log.exception("promotion_undo_version_failed", flow_id=flow_id)


async def sync(service: Production, *, actor: str) -> dict[str, Any]:
    """Import main into flow versions; returns ``{flow_id: {version, created} | {error}}``."""
    repo = service.repo
    head = await repo.head(gitstore.MAIN)
    report: dict[str, Any] = {}
    for flow_id, file in (await repo.read_main()).items():
        result = loading.check_flow(file.text, filename=file.path)
        if result.spec is None or result.spec.id != flow_id:
            problems = [p.format() for p in result.errors] or [
                f"{file.path}: the spec's id differs from its directory"
            ]
            report[flow_id] = {"error": "; ".join(problems[:3])}
            continue
        try:
            before = (await service.runs.get_flow(flow_id)).current_version
        except LinkloomError:
            before = None
        version = await service.runs.apply_flow(
            result.spec, source="sync", actor=actor, git_commit=head
        )
        report[flow_id] = {"version": version.version, "created": version.version != before}
    await service.audit(actor, "flows.sync", "repo", head, flows=sorted(report))
    return {"commit": head, "flows": report}


async def history(service: Production, flow_id: str) -> list[dict[str, Any]]:
    """The flow's versions, newest first, each with its git commit's subject when known
    (``flow_id`` is a checked flow id)."""
    versions = await service.runs.list_flow_versions(flow_id)
    commits = {
        c.sha: c for c in await service.repo.log(f"{gitstore.FLOWS_DIR}/{flow_id}", limit=200)
    }
    current = (await service.runs.get_flow(flow_id)).current_version
    out = []
    for v in sorted(versions, key=lambda v: v.version, reverse=True):
        commit = commits.get(v.git_commit or "")
        out.append(
            {
                "version": v.version,
                "current": v.version == current,
                "source": v.source,
                "created_by": v.created_by,
                "created_at": v.created_at.isoformat() if v.created_at else None,
                "content_hash": v.content_hash,
                "git_commit": v.git_commit,
                "commit_subject": commit.message.splitlines()[0] if commit else None,
            }
        )
    return out


def _load(found: gitstore.FlowFile) -> FlowSpec:
    spec = _load_text(found.text, found.path)
    if spec is None or spec.id != found.flow_id:
        raise errors.NotPromotable(
            proposal_id=found.commit[:12],
            reasons=f"{found.path} is not a valid spec of flow {found.flow_id!r}",
        )
    return spec


def _load_text(text: str, path: str) -> FlowSpec | None:
    return loading.check_flow(text, filename=path).spec
