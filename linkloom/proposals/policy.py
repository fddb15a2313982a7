"""Promotion policy: who must approve a proposal, and which check results block it.

Three sources, each of which can only make promotion harder:

* the server's settings: ``security.required_approvals`` and ``security.block_promotion_on``
  (check statuses that block promotion outright; default ``failed`` and ``error``);
* ``flows/<flow-id>/policy.yaml`` on the flows repo's ``main``::

      required_approvals: 2        # at least this many reviewers other than the author
      owners: [alice, bob]         # at least one of them must approve a change of this flow
      block_on: [failed, attention]

* a ``CODEOWNERS`` file on ``main`` (at the root, ``.github/`` or ``docs/``; GitHub's syntax, the
  last matching pattern wins): the owners of ``flows/<flow-id>/flow.yaml`` must approve too.
  ``@alice`` names the token ``alice``; teams and e-mail addresses are matched literally.

Policy is always read from ``main``, never from the proposal's branch: a proposal cannot loosen
the rules it is judged by (a change to a policy file is judged by the policy in force).

A check whose status is ``attention`` (results differ from production) does not block, but needs
an approval given after that check finished: a reviewer must have seen what changed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import yaml

from linkloom.proposals.errors import InvalidPolicy
from linkloom.proposals.models import Check, CheckStatus, Proposal, Review, ReviewDecision

POLICY_FILE = "policy.yaml"  # flows/<flow-id>/policy.yaml
CODEOWNERS_PATHS = ("CODEOWNERS", ".github/CODEOWNERS", "docs/CODEOWNERS")
DEFAULT_BLOCK_ON = frozenset({CheckStatus.FAILED, CheckStatus.ERROR})
_BLOCKABLE = frozenset({CheckStatus.FAILED, CheckStatus.ERROR, CheckStatus.ATTENTION})
_KEYS = frozenset({"required_approvals", "owners", "block_on"})


@dataclass(frozen=True, slots=True, kw_only=True)
class FlowPolicy:
    """The rules for promoting a change of one flow."""

    required_approvals: int = 1
    owners: tuple[str, ...] = ()
    block_on: frozenset[CheckStatus] = DEFAULT_BLOCK_ON
    problems: tuple[str, ...] = ()  # a policy file on main that cannot be read: fail closed

    def stricter(self, other: FlowPolicy) -> FlowPolicy:
        """The combination of two policies: the larger count, every owner, every block."""
        return FlowPolicy(
            required_approvals=max(self.required_approvals, other.required_approvals),
            owners=tuple(dict.fromkeys((*self.owners, *other.owners))),
            block_on=self.block_on | other.block_on,
            problems=self.problems + other.problems,
        )

    def to_dict(self) -> dict[str, object]:
        return {
            "required_approvals": self.required_approvals,
            "owners": list(self.owners),
            "block_on": sorted(s.value for s in self.block_on),
        }


def parse(text: str, *, where: str) -> FlowPolicy:
    """A ``policy.yaml`` text; ``InvalidPolicy`` says what is wrong."""
    try:
        data = yaml.safe_load(text) if text.strip() else {}
    except yaml.YAMLError as exc:
        raise InvalidPolicy(where=where, reason=f"not valid YAML: {exc}") from exc
    if not isinstance(data, Mapping):
        raise InvalidPolicy(where=where, reason="it must be a mapping")
    unknown = sorted(set(map(str, data)) - _KEYS)
    if unknown:
        raise InvalidPolicy(
            where=where, reason=f"unknown key(s) {unknown}: use {', '.join(sorted(_KEYS))}"
        )
    count = data.get("required_approvals", 1)
    if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= 20:
        raise InvalidPolicy(where=where, reason="required_approvals must be a number 0–20")
    owners = data.get("owners") or []
    if not isinstance(owners, list) or not all(isinstance(o, str) and o.strip() for o in owners):
        raise InvalidPolicy(where=where, reason="owners must be a list of token names")
    return FlowPolicy(
        required_approvals=count,
        owners=tuple(_name(o) for o in owners),
        block_on=statuses(data.get("block_on", [s.value for s in DEFAULT_BLOCK_ON]), where=where),
    )


def statuses(values: object, *, where: str) -> frozenset[CheckStatus]:
    """Check statuses from a list of names (``failed``, ``error``, ``attention``)."""
    if not isinstance(values, list | tuple):
        raise InvalidPolicy(where=where, reason="block_on must be a list of check statuses")
    out = set()
    for value in values:
        try:
            status = CheckStatus(str(value))
        except ValueError:
            status = None
        if status not in _BLOCKABLE:
            raise InvalidPolicy(
                where=where, reason=f"block_on takes failed, error and attention, not {value!r}"
            )
        out.add(status)
    return frozenset(out)


def owners_of(codeowners: str, path: str) -> tuple[str, ...]:
    """The owners ``CODEOWNERS`` names for ``path`` (``@`` dropped from user names)."""
    from codeowners import CodeOwners

    return tuple(_name(owner) for _kind, owner in CodeOwners(codeowners).of(path))


def _name(owner: str) -> str:
    owner = owner.strip()
    return owner[1:] if owner.startswith("@") and "/" not in owner else owner


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    """Whether a proposal may be promoted now, and every reason it may not."""

    review_reasons: tuple[str, ...] = ()  # approvals, owners, requests for changes
    check_reasons: tuple[str, ...] = ()  # check results
    approvers: tuple[str, ...] = ()
    needed: int = 1
    policies: dict[str, FlowPolicy] = field(default_factory=dict)

    @property
    def reasons(self) -> tuple[str, ...]:
        return self.review_reasons + self.check_reasons

    @property
    def approved(self) -> bool:
        """The reviews alone satisfy the policy (the checks may still block)."""
        return not self.review_reasons

    @property
    def allowed(self) -> bool:
        return not self.reasons

    def to_dict(self) -> dict[str, object]:
        return {
            "allowed": self.allowed,
            "reasons": list(self.reasons),
            "approvers": list(self.approvers),
            "required_approvals": self.needed,
            "flows": {k: p.to_dict() for k, p in self.policies.items()},
        }


def decide(
    *,
    proposal: Proposal,
    checks: Iterable[Check],
    reviews: Iterable[Review],
    policies: Mapping[str, FlowPolicy],
    check_names: Sequence[str],
) -> Decision:
    """Judge the current revision: its checks, approvals and requests for changes.

    ``policies`` holds each changed flow's policy, already combined with the settings'.
    """
    latest: dict[str, Review] = {}
    for review in reviews:
        if review.revision == proposal.revision and review.reviewer != proposal.author:
            latest[review.reviewer] = review  # in time order: the last decision counts
    approvals = {r.reviewer: r for r in latest.values() if r.decision is ReviewDecision.APPROVE}
    approvers = tuple(sorted(approvals))
    combined = FlowPolicy(required_approvals=0, block_on=frozenset())
    for flow_policy in policies.values():
        combined = combined.stricter(flow_policy)
    needed = combined.required_approvals
    reviewing: list[str] = []
    if len(approvers) < needed:
        reviewing.append(
            f"{len(approvers)} of {needed} approval(s) on revision {proposal.revision}"
        )
    changes = sorted(
        r.reviewer for r in latest.values() if r.decision is ReviewDecision.REQUEST_CHANGES
    )
    if changes:
        reviewing.append(f"changes requested by {', '.join(changes)}")
    for flow_id, flow_policy in sorted(policies.items()):
        reviewing.extend(flow_policy.problems)
        if flow_policy.owners and not set(flow_policy.owners) & set(approvers):
            reviewing.append(
                f"{flow_id} needs an approval from one of its owners: "
                + ", ".join(flow_policy.owners)
            )
    checking: list[str] = []
    found = {c.name.value: c for c in checks if c.revision == proposal.revision}
    for name in check_names:
        check = found.get(name)
        if check is None or not check.finished or check.status is CheckStatus.SKIPPED:
            state = "has not run" if check is None else f"is {check.status.value}"
            checking.append(f"check {name} {state}")
        elif check.status in combined.block_on:
            checking.append(f"check {name} is {check.status.value}: {check.summary}")
        elif check.status is CheckStatus.ATTENTION and not _seen(check, approvals.values()):
            checking.append(
                f"check {name} needs attention: a reviewer must approve after reading it "
                f"({check.summary})"
            )
    return Decision(
        review_reasons=tuple(reviewing),
        check_reasons=tuple(checking),
        approvers=approvers,
        needed=needed,
        policies=dict(policies),
    )


def _seen(check: Check, approvals: Iterable[Review]) -> bool:
    """Whether an approval was given after ``check`` finished."""
    done = check.finished_at
    return any(_at_or_after(r.at, done) for r in approvals)


def _at_or_after(at: datetime | None, done: datetime | None) -> bool:
    return at is not None and (done is None or at >= done)
