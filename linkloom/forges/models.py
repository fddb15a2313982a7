"""Domain types of forge integration: webhook events, the pull request ↔ proposal link and the
state of the report on the pull request."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class ForgeKind(StrEnum):
    GITHUB = "github"  # github.com or GitHub Enterprise
    GITLAB = "gitlab"  # gitlab.com or self-hosted GitLab
    GITEA = "gitea"  # Gitea or Forgejo (they speak GitHub's webhook dialect)


class PullAction(StrEnum):
    OPENED = "opened"  # opened or reopened: a proposal opens (or reopens)
    UPDATED = "updated"  # a new head commit (pushed or force-pushed): a new revision
    CLOSED = "closed"  # closed without merging: the proposal closes
    MERGED = "merged"  # merged on the forge: the new production branch is imported and promoted
    OTHER = "other"  # labels, reviews, edits: nothing to do


class LinkState(StrEnum):
    OPEN = "open"  # the pull request is open
    CLOSED = "closed"  # closed without merging
    MERGED = "merged"  # merged on the forge


class ReportStatus(StrEnum):
    NONE = "none"  # nothing to report (no proposal, or a forge without a token)
    PENDING = "pending"  # a report is due: sent at ``next_at``
    SENT = "sent"  # the forge has the latest report
    FAILED = "failed"  # every attempt failed; the next change of the proposal tries again


@dataclass(frozen=True, slots=True, kw_only=True)
class PullRequest:
    """A pull (GitLab: merge) request as a webhook describes it."""

    forge: ForgeKind
    repo: str  # owner/name (GitLab: group/project)
    number: int  # GitHub/Gitea number, GitLab iid
    url: str
    title: str
    author: str
    head_sha: str
    head_ref: str  # the source branch
    base_ref: str  # the target branch
    description: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class PullEvent:
    action: PullAction
    pull: PullRequest
    actor: str  # the forge user who acted (for a merge: who merged)
    merge_commit: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PushEvent:
    forge: ForgeKind
    repo: str
    ref: str  # refs/heads/<branch>
    before: str
    after: str
    pusher: str
    forced: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Delivery:
    """One verified webhook delivery, read."""

    forge: ForgeKind
    key: str  # de-duplication key: a second delivery with it is a replay
    event: str  # the forge's event name (pull_request, push, Merge Request Hook, …)
    repo: str  # the repository it is about ("" when the payload names none)
    payload: PullEvent | PushEvent | None = None  # None: nothing to act on (see ``ignored``)
    ignored: str = ""  # why nothing will be done, said to the sender


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportState:
    status: ReportStatus = ReportStatus.NONE
    attempts: int = 0
    next_at: datetime | None = None
    error: str | None = None
    sent: str = ""  # fingerprint of the last report the forge accepted
    target: str = ""  # fingerprint of the report being sent (attempts count for it)


@dataclass(frozen=True, slots=True, kw_only=True)
class PullLink:
    """A pull request and the proposal it is (``proposal_id`` None: it touches no flows)."""

    forge: ForgeKind
    repo: str
    number: int
    url: str
    title: str
    author: str
    head_sha: str
    head_ref: str
    base_ref: str
    proposal_id: str | None = None
    state: LinkState = LinkState.OPEN
    merged_by: str | None = None
    merge_commit: str | None = None
    comment_id: str | None = None
    note: str = ""  # e.g. "touches no file under flows/: ignored"
    report: ReportState = field(default_factory=ReportState)
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @property
    def key(self) -> str:
        return f"{self.forge.value}:{self.repo}#{self.number}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "forge": self.forge.value,
            "repo": self.repo,
            "number": self.number,
            "url": self.url,
            "title": self.title,
            "author": self.author,
            "head_sha": self.head_sha,
            "head_ref": self.head_ref,
            "base_ref": self.base_ref,
            "proposal_id": self.proposal_id,
            "state": self.state.value,
            "merged_by": self.merged_by,
            "merge_commit": self.merge_commit,
            "note": self.note,
            "report": {
                "status": self.report.status.value,
                "attempts": self.report.attempts,
                "next_at": self.report.next_at.isoformat() if self.report.next_at else None,
                "error": self.report.error,
            },
        }
