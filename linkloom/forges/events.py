"""Each forge's webhooks: verify the delivery with that forge's own scheme, then read it.

| forge | verified by | delivery id | events |
| --- | --- | --- | --- |
| GitHub | ``X-Hub-Signature-256: sha256=<HMAC-SHA256(secret, body)>`` | ``X-GitHub-Delivery`` | ``pull_request``, ``push`` |
| Gitea / Forgejo | ``X-Hub-Signature-256`` (or ``X-Gitea-Signature`` / ``X-Forgejo-Signature``: the bare hex HMAC) | ``X-Gitea-Delivery`` | ``pull_request``, ``push`` |
| GitLab | ``X-Gitlab-Token: <secret>`` (compared in constant time) | ``Idempotency-Key`` | ``Merge Request Hook``, ``Push Hook`` |

The de-duplication key covers what was verified: the body's hash (a signed body replayed under
a new delivery id is still a replay), plus the delivery id when there is one (the forge's own
redelivery). ``verify`` raises before a byte of the body is parsed.
"""  # noqa: E501  -- the table reads better unwrapped

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any

from linkloom import signing
from linkloom.errors import InvalidInput, NotAuthenticated
from linkloom.forges.models import (
    Delivery,
    ForgeKind,
    PullAction,
    PullEvent,
    PullRequest,
    PushEvent,
)

MAX_BODY_BYTES = 25_000_000  # GitHub caps payloads at 25 MB
# Sent twice, one of these would let a proxy and this server read different values: refused.
_CREDENTIAL_HEADERS = (
    "X-Hub-Signature-256", "X-Gitea-Signature", "X-Forgejo-Signature", "X-Gitlab-Token",
    "X-GitHub-Delivery", "X-Gitea-Delivery", "X-Forgejo-Delivery", "Idempotency-Key",
    "X-Gitlab-Event-UUID",
)  # fmt: skip
ZERO_SHA = "0" * 40


class DeliveryRejected(NotAuthenticated):
    """Webhook refused: {reason}. Set the same secret on the forge and in LOOM_FORGE__WEBHOOK_SECRET."""  # noqa: E501  -- one line on purpose

    code = "webhook_rejected"


class DeliveryReplayed(NotAuthenticated):
    """This {forge} delivery was received before; it is not handled twice."""

    code = "webhook_replayed"


class PayloadInvalid(InvalidInput):
    """The {forge} webhook payload is not usable: {reason}."""

    code = "webhook_payload_invalid"


def verify(kind: ForgeKind, secret: str, body: bytes, headers: Mapping[str, str]) -> list[str]:
    """Check the delivery's credential; return its de-duplication keys (any one seen = replay).

    Raises:
        DeliveryRejected: no secret configured, no signature/token, or a wrong one.
    """
    twice = signing.repeated(headers, *_CREDENTIAL_HEADERS)
    if twice:
        raise DeliveryRejected(reason=f"{twice[0]} was sent more than once")
    lower = {k.lower(): v for k, v in headers.items()}
    if not secret:
        raise DeliveryRejected(reason="this server has no forge webhook secret configured")
    if len(body) > MAX_BODY_BYTES:
        raise DeliveryRejected(reason=f"the body is larger than {MAX_BODY_BYTES} bytes")
    if kind is ForgeKind.GITLAB:
        given = lower.get("x-gitlab-token", "")
        if not given:
            raise DeliveryRejected(reason="no X-Gitlab-Token header")
        if not hmac.compare_digest(given.encode(), secret.encode()):
            raise DeliveryRejected(reason="X-Gitlab-Token does not match")
        delivery = lower.get("idempotency-key") or lower.get("x-gitlab-event-uuid") or ""
    else:
        expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        signed = lower.get("x-hub-signature-256", "")
        bare = lower.get("x-forgejo-signature") or lower.get("x-gitea-signature") or ""
        if signed:
            ok = hmac.compare_digest(signed.strip().encode(), f"sha256={expected}".encode())
        elif bare and kind is ForgeKind.GITEA:
            ok = hmac.compare_digest(bare.strip().encode(), expected.encode())
        else:
            raise DeliveryRejected(reason="no X-Hub-Signature-256 header")
        if not ok:
            raise DeliveryRejected(reason="the signature does not match the body")
        delivery = (
            lower.get("x-github-delivery", "")
            if kind is ForgeKind.GITHUB
            else lower.get("x-gitea-delivery") or lower.get("x-forgejo-delivery") or ""
        )
    keys = [f"{kind.value}:body:{hashlib.sha256(body).hexdigest()}"]
    if delivery.strip():
        keys.append(f"{kind.value}:id:{hashlib.sha256(delivery.strip().encode()).hexdigest()}")
    return keys


def read(kind: ForgeKind, headers: Mapping[str, str], body: bytes, *, keys: list[str]) -> Delivery:
    """What a verified delivery is about. Events other than pull requests and pushes are read as
    ignored (with the reason), never as errors: forges send ``ping`` and more."""
    lower = {k.lower(): v for k, v in headers.items()}
    try:
        data = json.loads(body) if body.strip() else {}
    except (ValueError, UnicodeDecodeError) as exc:
        raise PayloadInvalid(forge=kind.value, reason=f"not JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise PayloadInvalid(forge=kind.value, reason="the body is not a JSON object")
    if kind is ForgeKind.GITLAB:
        event = lower.get("x-gitlab-event", "")
        repo = str(_get(data, "project", "path_with_namespace") or "")
        reader = {"Merge Request Hook": _gitlab_merge_request, "Push Hook": _gitlab_push}.get(event)
    else:
        event = (
            lower.get("x-github-event", "")
            if kind is ForgeKind.GITHUB
            else lower.get("x-gitea-event") or lower.get("x-forgejo-event") or ""
        )
        repo = str(_get(data, "repository", "full_name") or "")
        reader = {"pull_request": _github_pull, "push": _github_push}.get(event)
    key = keys[0]
    if reader is None:
        return Delivery(forge=kind, key=key, event=event, repo=repo,
                        ignored=f"the {event or 'unnamed'} event is not used")  # fmt: skip
    try:
        payload = reader(kind, data, repo)
    except (KeyError, TypeError, ValueError) as exc:
        raise PayloadInvalid(forge=kind.value, reason=f"{event}: missing or bad {exc}") from exc
    if isinstance(payload, str):
        return Delivery(forge=kind, key=key, event=event, repo=repo, ignored=payload)
    return Delivery(forge=kind, key=key, event=event, repo=repo, payload=payload)


# ------------------------------------------------------------------------ GitHub and Gitea


_GITHUB_ACTIONS = {
    "opened": PullAction.OPENED,
    "reopened": PullAction.OPENED,
    "synchronize": PullAction.UPDATED,  # GitHub
    "synchronized": PullAction.UPDATED,  # Gitea
}


def _github_pull(kind: ForgeKind, data: dict[str, Any], repo: str) -> PullEvent | str:
    pr = data["pull_request"]
    action = str(data.get("action") or "")
    if action == "closed":
        found = PullAction.MERGED if pr.get("merged") else PullAction.CLOSED
    else:
        found = _GITHUB_ACTIONS.get(action, PullAction.OTHER)
    if found is PullAction.OTHER:
        return f"pull request action {action!r} changes nothing here"
    sender = _login(data.get("sender")) or _login(pr.get("user"))
    actor = _login(pr.get("merged_by")) or sender if found is PullAction.MERGED else sender
    return PullEvent(
        action=found,
        actor=actor,
        merge_commit=pr.get("merge_commit_sha") if found is PullAction.MERGED else None,
        pull=PullRequest(
            forge=kind,
            repo=repo,
            number=int(pr.get("number") or data["number"]),
            url=str(pr.get("html_url") or ""),
            title=str(pr.get("title") or ""),
            author=_login(pr.get("user")),
            head_sha=_sha(pr["head"]["sha"]),
            head_ref=str(pr["head"].get("ref") or ""),
            base_ref=str(pr["base"]["ref"]),
            description=str(pr.get("body") or ""),
        ),
    )


def _github_push(kind: ForgeKind, data: dict[str, Any], repo: str) -> PushEvent | str:
    ref = str(data["ref"])
    if not ref.startswith("refs/heads/"):
        return f"a push to {ref} changes no branch"
    pusher = data.get("pusher") or {}
    name = _login(data.get("sender")) or str(pusher.get("name") or pusher.get("login") or "")
    return PushEvent(
        forge=kind,
        repo=repo,
        ref=ref,
        before=str(data.get("before") or ZERO_SHA),
        after=str(data["after"]),
        pusher=name,
        forced=bool(data.get("forced")),
    )


# ------------------------------------------------------------------------ GitLab


_GITLAB_ACTIONS = {
    "open": PullAction.OPENED,
    "reopen": PullAction.OPENED,
    "close": PullAction.CLOSED,
    "merge": PullAction.MERGED,
}


def _gitlab_merge_request(kind: ForgeKind, data: dict[str, Any], repo: str) -> PullEvent | str:
    mr = data["object_attributes"]
    action = str(mr.get("action") or "")
    found = _GITLAB_ACTIONS.get(action, PullAction.OTHER)
    if action == "update":
        # Title, label and approval edits arrive as updates too; only a new commit matters.
        found = PullAction.UPDATED if mr.get("oldrev") else PullAction.OTHER
    if found is PullAction.OTHER:
        return f"merge request action {action!r} changes nothing here"
    user = str(_get(data, "user", "username") or "")
    return PullEvent(
        action=found,
        actor=user,
        merge_commit=mr.get("merge_commit_sha") if found is PullAction.MERGED else None,
        pull=PullRequest(
            forge=kind,
            repo=repo,
            number=int(mr["iid"]),
            url=str(mr.get("url") or ""),
            title=str(mr.get("title") or ""),
            author=user if found is PullAction.OPENED else "",
            head_sha=_sha(mr["last_commit"]["id"]),
            head_ref=str(mr.get("source_branch") or ""),
            base_ref=str(mr["target_branch"]),
            description=str(mr.get("description") or ""),
        ),
    )


def _gitlab_push(kind: ForgeKind, data: dict[str, Any], repo: str) -> PushEvent | str:
    ref = str(data["ref"])
    if not ref.startswith("refs/heads/"):
        return f"a push to {ref} changes no branch"
    return PushEvent(
        forge=kind,
        repo=repo,
        ref=ref,
        before=str(data.get("before") or ZERO_SHA),
        after=str(data["after"]),
        pusher=str(data.get("user_username") or data.get("user_name") or ""),
    )


# ------------------------------------------------------------------------ helpers


def _get(data: Any, *path: str) -> Any:
    for part in path:
        if not isinstance(data, dict):
            return None
        data = data.get(part)
    return data


def _login(user: Any) -> str:
    if not isinstance(user, dict):
        return ""
    return str(user.get("login") or user.get("username") or user.get("name") or "")


def _sha(value: Any) -> str:
    text = str(value or "")
    if len(text) != 40 or any(c not in "0123456789abcdef" for c in text):
        raise ValueError(f"commit id {text!r}")
    return text
