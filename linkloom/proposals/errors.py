"""Errors of the proposal lifecycle.

LinkloomError
├── NotFound
│   └── ProposalNotFound          no proposal with that id
├── Conflict
│   ├── InvalidTransition         the proposal's status does not allow the action
│   ├── ProposalStale             production moved past the proposal's base: rebase first
│   ├── NotPromotable             approvals missing, checks not green, or stale
│   └── PromotionFailed           promotion failed part-way; production was restored
├── InvalidInput
│   ├── NothingToPropose          the files or ref change no flow
│   └── InvalidPolicy             a policy.yaml on main cannot be read
└── NotPermitted
    └── SelfApproval              an author approving their own proposal
"""

from __future__ import annotations

from linkloom.errors import Conflict, InvalidInput, NotFound, NotPermitted


class ProposalNotFound(NotFound):
    """Proposal {proposal_id!r} not found; list proposals with 'loom proposal list'."""

    code = "proposal_not_found"


class InvalidTransition(Conflict):
    """Proposal {proposal_id!r} is {status}; {action} is not possible now ({hint})."""

    code = "invalid_transition"


class ProposalStale(Conflict):
    """Proposal {proposal_id!r} is stale: production moved past its base; run 'loom proposal rebase {proposal_id}'."""  # noqa: E501  -- the message is one line on purpose

    code = "proposal_stale"


class NotPromotable(Conflict):
    """Proposal {proposal_id!r} cannot be promoted: {reasons}."""

    code = "not_promotable"


class PromotionFailed(Conflict):
    """Promoting {what} failed part-way ({reason}); production was left as it was, retry it."""

    code = "promotion_failed"


class NothingToPropose(InvalidInput):
    """The proposal changes no flow: edit files under flows/<flow-id>/ and try again."""

    code = "nothing_to_propose"


class SelfApproval(NotPermitted):
    """{actor!r} opened proposal {proposal_id!r}; authors cannot approve their own proposals, ask another reviewer."""  # noqa: E501  -- the message is one line on purpose

    code = "self_approval"


class InvalidPolicy(InvalidInput):
    """The promotion policy in {where} is invalid: {reason}; fix it on main."""

    code = "invalid_policy"
