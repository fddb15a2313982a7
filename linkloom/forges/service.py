"""``ForgeService``: pull requests on the team's forge are proposals.

    receive      verify (the forge's own scheme) → read → de-duplicate → store → queue; answers
                 at once (forges time out in seconds)
    handle       one delivery at a time, in order:
                 PR opened/reopened/new head → fetch its head, open or revise the proposal keyed
                 by the PR, report pending, run the checks; a PR touching no flows is said so
                 on the PR (a success status) and no proposal is made
                 PR closed → the proposal closes;  PR merged / push to production → the remote
                 is imported (``RemoteSync.catch_up``), promoting the merged proposal
    heads        a PR's fetched head (``refs/loom/pull/<n>``) is kept only while the PR is open
                 and its live proposal is at that head: it is deleted after a refused or
                 flow-less head, a close, a merge, and (``prune_heads``, every few minutes)
                 once the proposal closes or is promoted in Link Loom; a later head is fetched
                 again
    report loop  every few seconds, for each open PR: the report its proposal's state calls
                 for, sent when it differs from what the forge has; a failure is retried with
                 backoff and never blocks the checks
    attribute    which merged PR brought a commit onto production (for ``RemoteSync``)

Unhandled deliveries survive a restart (the store keeps them until handled).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

import structlog

from linkloom.errors import LinkloomError, Unavailable
from linkloom.flows import gitstore
from linkloom.forges import events, report
from linkloom.forges.clients import ForgeClient, ForgeUnavailable
from linkloom.forges.models import (
    Delivery,
    ForgeKind,
    LinkState,
    PullAction,
    PullEvent,
    PullLink,
    PullRequest,
    PushEvent,
    ReportState,
    ReportStatus,
)
from linkloom.forges.ports import ForgeStore, StoredDelivery
from linkloom.proposals import errors as proposal_errors
from linkloom.proposals import limits
from linkloom.proposals.mirroring import Attribution, RemoteSync
from linkloom.proposals.service import ProposalService

log = structlog.get_logger(__name__)

NO_FLOWS = "touches no file under flows/: nothing for Link Loom to check"
REFUSED = "refused: "  # a head over the proposal limits (``proposals.limits``)
_PULL_REFS = {
    ForgeKind.GITHUB: "refs/pull/{n}/head",
    ForgeKind.GITEA: "refs/pull/{n}/head",
    ForgeKind.GITLAB: "refs/merge-requests/{n}/head",
}
EVENT_HEADERS = {
    ForgeKind.GITHUB: "X-GitHub-Event",
    ForgeKind.GITEA: "X-Gitea-Event",
    ForgeKind.GITLAB: "X-Gitlab-Event",
}
HANDLE_ATTEMPTS = 5


@dataclass(frozen=True, slots=True, kw_only=True)
class ForgeConfig:
    kind: ForgeKind
    repo: str  # owner/name on the forge
    webhook_secret: str
    public_url: str  # links in reports point here
    report_max_attempts: int = 8
    report_retry_seconds: float = 2.0
    report_interval: float = 2.0  # how often open pull requests' reports are reconciled
    retry_max_seconds: float = 300.0
    prune_heads_seconds: float = 300.0  # how often fetched heads no proposal needs are deleted


@dataclass(frozen=True, slots=True, kw_only=True)
class Receipt:
    """What a webhook delivery's sender is told."""

    forge: str
    event: str
    handling: str  # queued | ignored
    reason: str = ""


@dataclass(slots=True, kw_only=True)
class ForgeService:
    config: ForgeConfig
    store: ForgeStore
    proposals: ProposalService
    sync: RemoteSync
    clock: Any
    client: ForgeClient | None = None  # None: no token, nothing is reported
    _queue: asyncio.Queue[tuple[StoredDelivery, int]] = field(default_factory=asyncio.Queue)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _idle: asyncio.Event = field(default_factory=asyncio.Event)
    _report_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _head_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _link_lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # read-modify-write of links
    _busy: int = 0
    _heads_pruned_at: float | None = None  # the event loop's clock

    @property
    def kind(self) -> ForgeKind:
        return self.config.kind

    # ---------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        self.sync.attribute = self.attribute
        for stored in await self.store.unfinished_deliveries():
            self._enqueue(stored)
        self._tasks = [
            asyncio.create_task(self._handle_loop(), name="forge-deliveries"),
            asyncio.create_task(self._report_loop(), name="forge-reports"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self.client is not None:
            await self.client.aclose()

    async def drain(self, *, within: float = 60.0) -> None:
        """Wait until every queued delivery is handled (tests, graceful stops)."""
        async with asyncio.timeout(within):
            while self._busy or not self._queue.empty():
                self._idle.clear()
                await self._idle.wait()

    # ---------------------------------------------------------------- receiving

    async def receive(self, *, body: bytes, headers: Mapping[str, str]) -> Receipt:
        """Verify, read and queue one webhook delivery.

        Raises:
            DeliveryRejected: bad or missing signature/token (nothing is stored).
            DeliveryReplayed: the same delivery (or the same signed body) came before.
            PayloadInvalid: a pull request or push event that cannot be read.
        """
        keys = events.verify(self.kind, self.config.webhook_secret, body, headers)
        delivery = events.read(self.kind, headers, body, keys=keys)
        ignored = delivery.ignored or self._not_ours(delivery)
        if ignored:
            log.info("forge_delivery_ignored", forge=self.kind.value, kind=delivery.event,
                     reason=ignored)  # fmt: skip
            return Receipt(forge=self.kind.value, event=delivery.event, handling="ignored",
                           reason=ignored)  # fmt: skip
        now = self.clock.now()
        if not await self.store.record_delivery(
            keys=keys, forge=self.kind, event=delivery.event, body=body, received_at=now
        ):
            raise events.DeliveryReplayed(forge=self.kind.value)
        self._enqueue(
            StoredDelivery(key=keys[0], forge=self.kind, event=delivery.event, body=body,
                           received_at=now)
        )  # fmt: skip
        return Receipt(forge=self.kind.value, event=delivery.event, handling="queued")

    def _not_ours(self, delivery: Delivery) -> str:
        if delivery.repo.lower() != self.config.repo.lower():
            return (
                f"repository {delivery.repo or '(none)'} is not this server's flows repo "
                f"({self.config.repo})"
            )
        branch = self.sync.remote.config.branch
        payload = delivery.payload
        if isinstance(payload, PullEvent) and payload.pull.base_ref != branch:
            return f"a pull request into {payload.pull.base_ref}, not into {branch}"
        return ""

    def _enqueue(self, stored: StoredDelivery, attempt: int = 1) -> None:
        self._busy += 1
        self._queue.put_nowait((stored, attempt))

    # ---------------------------------------------------------------- handling

    async def _handle_loop(self) -> None:
        while True:
            stored, attempt = await self._queue.get()
            try:
                await self._handle(stored, attempt)
            except Exception:  # one bad delivery must not stop the others
                log.exception("forge_delivery_crashed", key=stored.key)
            finally:
                self._busy -= 1
                if self._busy == 0:
                    self._idle.set()

    async def _handle(self, stored: StoredDelivery, attempt: int) -> None:
        headers = {EVENT_HEADERS[stored.forge]: stored.event}
        delivery = events.read(stored.forge, headers, stored.body, keys=[stored.key])
        try:
            outcome = await self.handle(delivery)
        except Unavailable as exc:
            if attempt < HANDLE_ATTEMPTS:
                delay = self.config.report_retry_seconds * 2 ** (attempt - 1)
                log.warning("forge_delivery_retry", key=stored.key, error=exc.message,
                            attempt=attempt, delay=delay)  # fmt: skip
                self._busy += 1  # kept busy while it waits, so drain() waits for it too
                asyncio.get_running_loop().call_later(delay, self._requeue, stored, attempt + 1)
                return
            outcome = f"failed: {exc.message}"
        except LinkloomError as exc:
            outcome = f"failed: {exc.message}"
        await self.store.finish_delivery(stored.key, outcome=outcome, at=self.clock.now())
        log.info("forge_delivery_handled", forge=stored.forge.value, kind=stored.event,
                 outcome=outcome)  # fmt: skip

    def _requeue(self, stored: StoredDelivery, attempt: int) -> None:
        self._busy -= 1
        self._enqueue(stored, attempt)

    async def handle(self, delivery: Delivery) -> str:
        """Act on one read delivery; returns what was done."""
        payload = delivery.payload
        if isinstance(payload, PushEvent):
            return await self._on_push(payload)
        if isinstance(payload, PullEvent):
            if payload.action in (PullAction.OPENED, PullAction.UPDATED):
                return await self._on_head(payload)
            if payload.action is PullAction.CLOSED:
                return await self._on_closed(payload)
            if payload.action is PullAction.MERGED:
                return await self._on_merged(payload)
        return delivery.ignored or "nothing to do"

    async def _on_push(self, push: PushEvent) -> str:
        branch = push.ref.removeprefix("refs/heads/")
        if branch != self.sync.remote.config.branch:
            return f"a push to {branch}: its pull request's events carry the change"
        imported = await self.sync.catch_up(pusher=self._user(push.pusher), pushed=push.after)
        return f"imported {len(imported)} commit(s) of {branch}"

    async def ci_head(self, request: Any) -> Any:
        """CI mode (``forges.ci``): the pull request at the head commit CI checked out, handled
        as its webhook would be; returns the proposal (checks run)."""
        pull = PullRequest(
            forge=self.kind, repo=request.repo, number=request.number, url=request.url,
            title=request.title, author="", head_sha=request.head, head_ref=request.head_ref,
            base_ref=request.base,
        )  # fmt: skip
        event = PullEvent(action=PullAction.UPDATED, pull=pull, actor=request.author)
        await self._on_head(event, actor=request.author)
        link = await self.store.get_link(self.kind, request.repo, request.number)
        if link is None or link.proposal_id is None:
            raise proposal_errors.NothingToPropose()
        return await self.proposals.get(link.proposal_id)

    async def _on_head(self, event: PullEvent, *, actor: str | None = None) -> str:
        async with self._head_lock:  # a webhook and a CI job for one head make one revision
            try:
                return await self._head(event, actor=actor)
            finally:  # a refused head, one touching no flows, one that failed: none is kept
                await self._release_head(event.pull.number)

    async def _head(self, event: PullEvent, *, actor: str | None) -> str:
        pr = event.pull
        link = await self._link(event)
        await self.sync.catch_up()  # compare with production as it is now
        refs = (_PULL_REFS[self.kind].format(n=pr.number),) + (
            (f"refs/heads/{pr.head_ref}",) if pr.head_ref else ()
        )
        await asyncio.to_thread(
            self.sync.remote.fetch_pull, refs=refs, sha=pr.head_sha, number=pr.number
        )
        actor = actor or self._user(pr.author or event.actor)
        changed = await self.proposals.repo.changed_flows(gitstore.MAIN, pr.head_sha)
        proposal = await self._proposal_of(link)
        if not changed:
            if proposal is not None:
                await self.proposals.close(
                    proposal.id, actor=actor, reason="the pull request no longer changes flows"
                )
            await self._save(link, note=NO_FLOWS, proposal_id=None, report=_due(link, self.clock))
            self._wake.set()
            return NO_FLOWS
        try:
            if proposal is None:
                proposal = await self.proposals.open(
                    title=f"{pr.title} (#{pr.number})"
                    if pr.title
                    else f"Pull request #{pr.number}",
                    author=actor,
                    ref=pr.head_sha,
                    description=f"{pr.url}\n\n{pr.description}".strip(),
                    run_checks=False,
                )
                done = f"opened proposal {proposal.id}"
            elif proposal.head_commit != pr.head_sha:
                proposal = await self.proposals.revise_to(
                    proposal.id, head=pr.head_sha, actor=actor, run_checks=False
                )
                done = f"revision {proposal.revision} of proposal {proposal.id}"
            else:
                done = ""
        except (limits.ProposalTooLarge, limits.AuthorQuotaExceeded) as exc:
            # Said on the pull request (a failure status), never a crash of the delivery.
            note = REFUSED + exc.message
            await self._save(link, note=note, report=_due(link, self.clock))
            self._wake.set()
            return note
        if not done:
            done = f"proposal {proposal.id} already at {pr.head_sha[:12]}"
        link = await self._save(
            link, proposal_id=proposal.id, note="", report=_due(link, self.clock)
        )
        await self.report(link)  # pending, before the checks start
        await self.proposals.run_checks(proposal.id, actor=actor)
        self._wake.set()
        return done

    async def _on_closed(self, event: PullEvent) -> str:
        try:
            return await self._closed(event)
        finally:
            async with self._head_lock:
                await self._release_head(event.pull.number)

    async def _closed(self, event: PullEvent) -> str:
        link = await self._link(event)
        link = await self._save(link, state=LinkState.CLOSED)
        proposal = await self._proposal_of(link)
        if proposal is None:
            return "closed (no proposal)"
        await self.proposals.close(
            proposal.id, actor=self._user(event.actor), reason=f"pull request closed: {link.url}"
        )
        return f"closed proposal {proposal.id}"

    async def _on_merged(self, event: PullEvent) -> str:
        try:
            return await self._merged(event)
        finally:
            async with self._head_lock:
                await self._release_head(event.pull.number)

    async def _merged(self, event: PullEvent) -> str:
        link = await self._link(event)
        link = await self._save(
            link, state=LinkState.MERGED, merged_by=event.actor, merge_commit=event.merge_commit
        )
        imported = await self.sync.catch_up(
            pusher=self._user(event.actor), pushed=event.merge_commit
        )
        promoted = [i for i in imported if i.proposal_id and i.proposal_id == link.proposal_id]
        if promoted:
            return f"promoted proposal {link.proposal_id} as {promoted[0].commit[:12]}"
        return f"merged; imported {len(imported)} commit(s)"

    async def _link(self, event: PullEvent) -> PullLink:
        pr = event.pull
        found = await self.store.get_link(pr.forge, pr.repo, pr.number)
        now = self.clock.now()
        if found is None:
            return PullLink(
                forge=pr.forge, repo=pr.repo, number=pr.number, url=pr.url, title=pr.title,
                author=pr.author or event.actor, head_sha=pr.head_sha, head_ref=pr.head_ref,
                base_ref=pr.base_ref, created_at=now, updated_at=now,
            )  # fmt: skip
        state = LinkState.OPEN if event.action in (PullAction.OPENED, PullAction.UPDATED) else None
        return replace(
            found,
            url=pr.url or found.url,
            title=pr.title or found.title,
            head_sha=pr.head_sha,
            head_ref=pr.head_ref or found.head_ref,
            state=state or found.state,
        )

    async def _proposal_of(self, link: PullLink) -> Any:
        if link.proposal_id is None:
            return None
        try:
            proposal = await self.proposals.get(link.proposal_id)
        except proposal_errors.ProposalNotFound:
            return None
        return None if proposal.status.finished else proposal

    async def _save(self, link: PullLink, **changes: Any) -> PullLink:
        """Store what a delivery learnt of the pull request (``link``'s own fields and
        ``changes``) onto the stored row, keeping the report loop's comment id and report state
        unless ``changes`` sets them: the two never undo each other's writes."""
        async with self._link_lock:
            stored = await self.store.get_link(link.forge, link.repo, link.number)
            if stored is not None:
                link = replace(link, comment_id=stored.comment_id, report=stored.report)
            link = replace(link, **changes, updated_at=self.clock.now())
            await self.store.save_link(link)
            return link

    async def _save_report(
        self, link: PullLink, *, comment_id: str | None, report: ReportState
    ) -> None:
        """Store only the report loop's part (comment id, report state) onto the stored row."""
        async with self._link_lock:
            stored = await self.store.get_link(link.forge, link.repo, link.number) or link
            await self.store.save_link(
                replace(stored, comment_id=comment_id, report=report, updated_at=self.clock.now())
            )

    def _user(self, name: str) -> str:
        return f"{self.kind.value}:{name}" if name else self.kind.value

    # ---------------------------------------------------------------- fetched heads

    async def prune_heads(self) -> list[int]:
        """Delete every fetched pull request head (``refs/loom/pull/<n>``) that no live proposal
        needs, e.g. after its proposal was closed or promoted in Link Loom; returns their
        numbers. The report loop runs it every ``prune_heads_seconds``."""
        async with self._head_lock:
            return await self._prune_heads()

    async def _prune_heads(self, *, only: int | None = None) -> list[int]:
        """Kept: the head of an open pull request whose unfinished proposal is at that head (its
        ``proposals/<id>`` branch holds it anyway). The caller holds ``_head_lock``, so no head
        is dropped between its fetch and the proposal it opens."""
        heads = await asyncio.to_thread(self.sync.remote.pulls)
        if only is not None:
            heads = {n: sha for n, sha in heads.items() if n == only}
        if not heads:
            return []
        needed: dict[int, str] = {}
        for link in await self.store.links(open_only=True):
            ours = link.forge is self.kind and link.repo.lower() == self.config.repo.lower()
            if not ours or link.proposal_id is None or link.number not in heads:
                continue
            proposal = await self.proposals.store.get(link.proposal_id)
            if proposal is not None and not proposal.status.finished:
                needed[link.number] = proposal.head_commit
        dropped = []
        for number, sha in heads.items():
            if needed.get(number) == sha:
                continue
            if await asyncio.to_thread(self.sync.remote.drop_pull, number, expected=sha):
                dropped.append(number)
        if dropped:
            log.info("forge_pull_heads_dropped", forge=self.kind.value, pulls=dropped)
        return dropped

    async def _release_head(self, number: int) -> None:
        """Drop pull request ``number``'s fetched head unless its proposal needs it (the caller
        holds ``_head_lock``). Housekeeping: a failure is logged, never the delivery's."""
        try:
            await self._prune_heads(only=number)
        except Exception:  # the periodic prune_heads tries again
            log.exception("forge_pull_head_prune_failed", pull=number)

    # ---------------------------------------------------------------- attribution

    async def attribute(self, commit: str, parents: list[str], message: str) -> Attribution | None:
        """The open (or just merged) pull request whose merge ``commit`` is: by the merge commit
        the webhook named, the merged head among its parents, a fast-forward to the head, or the
        forge's squash message naming the number."""
        for link in await self.store.links(open_only=False):
            if link.proposal_id is None or link.state is LinkState.CLOSED:
                continue
            hit = (
                link.merge_commit == commit
                or link.head_sha in parents[1:]
                or link.head_sha == commit
                or _names(message, self.kind, link.number)
            )
            if not hit or await self._proposal_of(link) is None:
                continue
            who = link.merged_by or ""
            return Attribution(
                proposal_id=link.proposal_id,
                actor=self._user(who) if who else "",
                via=f"{self.kind.value} pull request #{link.number}",
            )
        return None

    # ---------------------------------------------------------------- reporting

    async def _report_loop(self) -> None:
        while True:
            self._wake.clear()  # before the round: a wake-up set during it starts the next one
            try:
                await self.report_due()
            except Exception:  # the loop outlives any bug in one round
                log.exception("forge_report_round_crashed")
            now = asyncio.get_running_loop().time()
            last = self._heads_pruned_at
            due = last is None or now - last >= self.config.prune_heads_seconds
            # A head's checks hold the lock for minutes: prune in a later round, never wait here
            # (the reports of every other pull request would wait too).
            if due and not self._head_lock.locked():
                self._heads_pruned_at = now
                try:
                    await self.prune_heads()
                except Exception:  # housekeeping; the next round tries again
                    log.exception("forge_pull_head_prune_failed")
            try:
                async with asyncio.timeout(self.config.report_interval):
                    await self._wake.wait()
            except TimeoutError:
                pass

    async def report_due(self) -> int:
        """Send every open pull request's report that differs from the forge's; returns how
        many were sent."""
        sent = 0
        for link in await self.store.links(open_only=True):
            if await self.report(link):
                sent += 1
        return sent

    async def compose(self, link: PullLink) -> report.Report | None:
        if link.note.startswith(REFUSED):
            description = link.note[: report.DESCRIPTION_LIMIT]
            return report.Report(state="failure", description=description,
                                 url=self.config.public_url, comment="")  # fmt: skip
        if link.proposal_id is None:
            if link.note != NO_FLOWS:
                return None
            return report.Report(state="success", description=NO_FLOWS,
                                 url=self.config.public_url, comment="")  # fmt: skip
        try:
            proposal = await self.proposals.get(link.proposal_id)
        except proposal_errors.ProposalNotFound:
            return None
        if proposal.head_commit != link.head_sha:
            return None  # a new head is being fetched; its own report follows
        checks = await self.proposals.checks(proposal.id)
        return report.compose(proposal=proposal, checks=checks, public_url=self.config.public_url)

    async def report(self, link: PullLink) -> bool:
        """Send ``link``'s report when the forge lacks it and no backoff holds it; True if sent.
        One report at a time: the comment is created once, then only edited."""
        if self.client is None:
            return False
        async with self._report_lock:
            fresh = await self.store.get_link(link.forge, link.repo, link.number)
            return await self._report(fresh or link)

    async def _report(self, link: PullLink) -> bool:
        assert self.client is not None
        wanted = await self.compose(link)
        if wanted is None or wanted.fingerprint == link.report.sent:
            return False
        state = link.report
        now = self.clock.now()
        same = state.target == wanted.fingerprint
        if same and state.status is ReportStatus.FAILED:
            return False  # gave up on this one; a change of the proposal tries again
        if same and state.next_at is not None and state.next_at > now:
            return False
        comment_id = link.comment_id
        try:
            # The comment first: when the status turns final, the comment already says why.
            if wanted.comment:
                comment_id = await self.client.upsert_comment(
                    repo=link.repo, number=link.number, body=wanted.comment, comment_id=comment_id
                )
            await self.client.set_status(
                repo=link.repo, sha=link.head_sha, state=wanted.state,
                description=wanted.description, url=wanted.url,
            )  # fmt: skip
        except ForgeUnavailable as exc:
            attempts = state.attempts + 1 if same else 1
            gave_up = attempts >= self.config.report_max_attempts
            delay = min(
                self.config.report_retry_seconds * 2 ** (attempts - 1),
                self.config.retry_max_seconds,
            )
            await self._save_report(
                link,
                comment_id=comment_id,
                report=replace(
                    state,
                    status=ReportStatus.FAILED if gave_up else ReportStatus.PENDING,
                    attempts=attempts,
                    next_at=now + timedelta(seconds=delay),
                    error=exc.message,
                    target=wanted.fingerprint,
                ),
            )
            log.warning("forge_report_failed", pull=link.key, attempts=attempts,
                        gave_up=gave_up, error=exc.message)  # fmt: skip
            return False
        await self._save_report(
            link,
            comment_id=comment_id,
            report=ReportState(status=ReportStatus.SENT, sent=wanted.fingerprint,
                               target=wanted.fingerprint),
        )  # fmt: skip
        log.info("forge_report_sent", pull=link.key, state=wanted.state)
        return True

    async def link_of(self, proposal_id: str) -> PullLink | None:
        return await self.store.link_of(proposal_id)


def _due(link: PullLink, clock: Any) -> ReportState:
    return replace(link.report, status=ReportStatus.PENDING, next_at=clock.now(), attempts=0,
                   error=None, target="")  # fmt: skip


def _names(message: str, kind: ForgeKind, number: int) -> bool:
    """A squash or rebase merge's message naming the request: ``(#12)`` on GitHub and Gitea,
    ``See merge request group/project!12`` on GitLab."""
    first = message.splitlines()[0] if message else ""
    if kind is ForgeKind.GITLAB:
        return re.search(rf"!{number}\b", message) is not None
    return re.search(rf"\(#{number}\)\s*$", first) is not None
