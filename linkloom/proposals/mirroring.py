"""Production in step with the team's git remote (``LOOM_FLOWS__REMOTE``).

``RemoteSync`` owns every exchange between the server's flows repo and the remote:

* ``start``: adopt (or create) the mirror, then ``catch_up``; a remote that cannot be reached
  leaves the last good production running and is retried by the poll.
* ``catch_up`` (at start, on a push webhook, every ``poll_seconds``): fetch, then import each
  commit on the remote's first-parent line after production's, oldest first, each all-or-nothing
  (``promotion.import_commit``). A commit that merged a pull request promotes its proposal
  (``attribute`` says which, and who merged); any other commit is applied as an unreviewed change
  and audited as such. An invalid spec stops the import at that commit and is reported once; a
  rewritten (force-pushed) remote branch is refused and reported once. The same commit twice
  imports nothing.
* ``publish`` / ``guard``: a promotion or rollback made in Link Loom is pushed (never forced);
  when the remote moved meanwhile it is caught up and the promotion tried again on top of it,
  refused by the usual staleness and conflict checks when the change is no longer clean.

One asyncio lock orders all of it: imports, promotions and rollbacks never interleave.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import structlog

from linkloom.errors import Conflict, LinkloomError
from linkloom.flows import gitstore
from linkloom.flows.remote import FlowsRemote, RemoteMoved, RemoteUnavailable

if TYPE_CHECKING:
    from linkloom.proposals.service import ProposalService

log = structlog.get_logger(__name__)
T = TypeVar("T")
PUBLISH_ATTEMPTS = 3


class RemoteDiverged(Conflict):
    """Refused: {reason}. Nothing was changed."""

    code = "flows_remote_diverged"


@dataclass(frozen=True, slots=True, kw_only=True)
class Attribution:
    """Who brought a commit onto the remote's production branch, when it was a reviewed merge."""

    proposal_id: str
    actor: str  # e.g. "github:octocat", the forge user who merged ("" when not known)
    via: str  # e.g. "github pull request #12"


class Attributor(Protocol):
    async def __call__(self, commit: str, parents: list[str], message: str) -> Attribution | None:
        """The merged pull request's proposal ``commit`` brought to production, if any."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Imported:
    """One commit made production by ``catch_up``."""

    commit: str
    versions: dict[str, int]
    proposal_id: str | None = None
    actor: str = ""
    reviewed: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Refusal:
    """A remote commit Link Loom will not make production, and why."""

    commit: str
    reason: str
    kind: str  # invalid | diverged


@dataclass(frozen=True, slots=True, kw_only=True)
class RemoteStatus:
    remote: str
    branch: str
    production_commit: str | None = None
    remote_commit: str | None = None
    last_fetch_at: datetime | None = None
    last_error: str | None = None
    refused: Refusal | None = None

    @property
    def state(self) -> str:
        """``in-sync`` | ``behind`` (remote commits not imported) | ``ahead`` (not pushed) |
        ``diverged`` (the remote was rewritten) | ``unknown`` (never fetched)."""
        if self.refused is not None and self.refused.kind == "diverged":
            return "diverged"
        if self.remote_commit is None or self.production_commit is None:
            return "unknown"
        if self.remote_commit == self.production_commit:
            return "in-sync"
        return "behind" if self.refused is not None or self.last_error else "pending"

    def to_dict(self) -> dict[str, Any]:
        return {
            "remote": self.remote,
            "branch": self.branch,
            "state": self.state,
            "production_commit": self.production_commit,
            "remote_commit": self.remote_commit,
            "last_fetch_at": self.last_fetch_at.isoformat() if self.last_fetch_at else None,
            "last_error": self.last_error,
            "refused": None
            if self.refused is None
            else {
                "commit": self.refused.commit,
                "reason": self.refused.reason,
                "kind": self.refused.kind,
            },
        }


@dataclass(slots=True, kw_only=True)
class RemoteSync:
    """Imports from and publishes to the flows remote. Built by ``wiring``; see the module doc."""

    service: ProposalService
    remote: FlowsRemote
    clock: Any
    poll_seconds: float = 60.0
    seed_from: str | None = None
    attribute: Attributor | None = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _status: RemoteStatus | None = None
    _alerted: set[str] = field(default_factory=set)
    _poller: asyncio.Task[None] | None = None
    _ready: bool = False

    def __post_init__(self) -> None:
        self._status = RemoteStatus(
            remote=self.remote.display_url, branch=self.remote.config.branch
        )

    # ---------------------------------------------------------------- lifecycle

    async def start(self, *, poll: bool = True) -> None:
        """Adopt the mirror and catch up once; then poll. Never raises for a remote that is down."""
        try:
            await self._ensure()
            await self.catch_up()
        except LinkloomError as exc:
            log.warning("flows_remote_unavailable_at_start", error=exc.message)
        if poll and self.poll_seconds > 0:
            self._poller = asyncio.create_task(self._poll(), name="flows-remote-poll")

    async def stop(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            await asyncio.gather(self._poller, return_exceptions=True)
            self._poller = None

    async def _ensure(self) -> None:
        """Adopt the mirror once, and make sure production holds main's flows (idempotent: a
        flow whose spec is unchanged gets no new version)."""
        if self._ready:
            return
        async with self._lock:
            if self._ready:
                return
            head = await asyncio.to_thread(self.remote.ensure, seed_from=self.seed_from)
            report = await self.service.sync(actor="git:" + self.remote.config.branch)
            problems = {f: r["error"] for f, r in report["flows"].items() if "error" in r}
            if problems:
                log.warning("flows_remote_invalid_specs", commit=head, problems=problems)
            self._ready = True
            self._note(production_commit=head)

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.poll_seconds)
            try:
                await self._ensure()
                await self.catch_up()
            except LinkloomError as exc:
                log.warning("flows_remote_poll_failed", error=exc.message)
            except Exception:  # the poll must outlive any bug in one round
                log.exception("flows_remote_poll_crashed")

    # ---------------------------------------------------------------- status

    def status(self) -> RemoteStatus:
        assert self._status is not None
        return self._status

    async def readiness(self) -> str:
        """A one-line ``/readyz`` detail (never fails the probe: production keeps running)."""
        status = self.status()
        if status.last_error:
            return f"error: {status.last_error}"[:300]
        if status.refused is not None:
            return f"{status.state}: {status.refused.reason}"[:300]
        head = (status.production_commit or "")[:12]
        return f"{status.state} at {head}" if head else status.state

    def _note(self, **changes: Any) -> None:
        assert self._status is not None
        self._status = replace(self._status, **changes)

    # ---------------------------------------------------------------- import

    async def catch_up(
        self, *, pusher: str | None = None, pushed: str | None = None
    ) -> list[Imported]:
        """Fetch the remote and make its new commits production, in order (see the module doc).
        ``pusher`` pushed commit ``pushed`` (any commit when None): the actor of that import.

        Raises:
            RemoteUnavailable: the remote could not be fetched; production is unchanged.
        """
        await self._ensure()
        async with self._lock:
            return await self._catch_up(pusher=pusher, pushed=pushed)

    async def _catch_up(self, *, pusher: str | None, pushed: str | None = None) -> list[Imported]:
        repo = self.service.repo
        try:
            remote_head = await asyncio.to_thread(self.remote.fetch)
        except RemoteUnavailable as exc:
            self._note(last_error=exc.message)
            log.warning("flows_remote_fetch_failed", error=exc.message)
            raise
        local = await repo.head(gitstore.MAIN)
        self._note(
            last_fetch_at=self.clock.now(),
            last_error=None,
            remote_commit=remote_head,
            production_commit=local,
        )
        if remote_head is None or remote_head == local:
            self._clear_refusal()
            return []
        if await repo.is_ancestor(remote_head, local):
            # Production is ahead: a push that failed after a promotion. Publish it now.
            await asyncio.to_thread(self.remote.push, local, expected=remote_head)
            self._note(remote_commit=local)
            return []
        if not await repo.is_ancestor(local, remote_head):
            await self._refuse(
                Refusal(
                    commit=remote_head,
                    kind="diverged",
                    reason=f"the remote's {self.remote.config.branch} was rewritten (force-"
                    f"pushed): production commit {local[:12]} is not in its history; "
                    "production stays there until the branch contains it again",
                ),
                actor=pusher,
            )
            return []
        done: list[Imported] = []
        previous = local
        for commit in await repo.first_parent_commits(local, remote_head):
            # A refused commit leaves production at ``previous``; a later commit that fixes it
            # is imported with every change since ``previous``.
            by = pusher if pushed is None or commit == pushed else None
            imported = await self._import(commit, previous=previous, pusher=by)
            if imported is not None:
                done.append(imported)
                previous = commit
        self._note(production_commit=previous)
        if previous == remote_head:
            self._clear_refusal()
        return done

    async def _import(self, commit: str, *, previous: str, pusher: str | None) -> Imported | None:
        from linkloom.proposals import promotion

        repo = self.service.repo
        info = (await repo.log(ref=commit, limit=1))[0]
        parents = await repo.parents(commit)
        attribution = (
            await self.attribute(commit, parents, info.message) if self.attribute else None
        )
        # Who merged: the forge's word, else whoever pushed the merge (the merge button's push
        # is the merger's), else the commit's author.
        actor = (attribution.actor if attribution else "") or pusher or f"git:{info.author}"
        await repo.move_branch(gitstore.MAIN, commit, expected=previous)
        try:
            versions = await promotion.import_commit(
                self.service,
                commit=commit,
                previous=previous,
                actor=actor,
                source="promotion" if attribution else "push",
                what=f"commit {commit[:12]} of the remote",
            )
        except LinkloomError as exc:
            await self._refuse(
                Refusal(
                    commit=commit,
                    kind="invalid",
                    reason=f"commit {commit[:12]} ({info.message.splitlines()[0][:80]}) was not "
                    f"made production: {exc.message}",
                ),
                actor=actor,
            )
            return None
        if attribution is not None:
            await self.service.mark_promoted(
                attribution.proposal_id, commit=commit, versions=versions, actor=actor,
                via=attribution.via,
            )  # fmt: skip
        elif await repo.changed_flows(previous, commit, since_merge_base=False):
            await self.service.audit(
                actor, "flows.push_unreviewed", "repo", commit, versions=versions,
                message=info.message.splitlines()[0][:200], branch=self.remote.config.branch,
            )  # fmt: skip
        log.info(
            "flows_remote_imported", commit=commit, versions=versions,
            reviewed=attribution is not None, actor=actor,
        )  # fmt: skip
        return Imported(
            commit=commit,
            versions=versions,
            proposal_id=attribution.proposal_id if attribution else None,
            actor=actor,
            reviewed=attribution is not None,
        )

    async def _refuse(self, refusal: Refusal, *, actor: str | None) -> None:
        self._note(refused=refusal)
        log.warning("flows_remote_refused", commit=refusal.commit, reason=refusal.reason)
        key = f"{refusal.kind}:{refusal.commit}"
        if key in self._alerted:
            return
        self._alerted.add(key)
        await self.service.audit(
            actor or "loom", "flows.remote_refused", "repo", refusal.commit,
            kind=refusal.kind, reason=refusal.reason, branch=self.remote.config.branch,
        )  # fmt: skip

    def _clear_refusal(self) -> None:
        if self.status().refused is not None:
            self._note(refused=None)

    # ---------------------------------------------------------------- publish

    async def publish(self, *, old: str, new: str) -> None:
        """Push ``new`` (production's new head, a child of ``old``). Called by promotions inside
        ``guard``, so the lock is already held."""
        await asyncio.to_thread(self.remote.push, new, expected=old)
        self._note(production_commit=new, remote_commit=new)
        log.info("flows_remote_pushed", commit=new)

    async def guard(self, attempt: Callable[[], Awaitable[T]]) -> T:
        """Run a promotion or rollback under the lock, caught up with the remote first; when
        the remote moved between the fetch and the push, catch up and try again."""
        await self._ensure()
        async with self._lock:
            for tries in range(1, PUBLISH_ATTEMPTS + 1):
                await self._catch_up(pusher=None)
                refused = self.status().refused
                if refused is not None and refused.kind == "diverged":
                    raise RemoteDiverged(reason=refused.reason)
                try:
                    return await attempt()
                except RemoteMoved:
                    if tries == PUBLISH_ATTEMPTS:
                        raise
                    log.info("flows_remote_moved_retrying", attempt=tries)
            raise AssertionError("unreachable")
