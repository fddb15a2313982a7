"""Inbound webhooks: signature checks, replay keys, and mapping a payload to flow inputs.

Two signature schemes are accepted (see ``linkloom.signing``):

* Link Loom ``v1``: ``X-Loom-Timestamp`` + ``X-Loom-Signature`` over ``"<ts>." + body``. Requests
  whose timestamp is more than ``tolerance`` seconds away from now are refused (stale), and the
  delivery key is what was verified (the timestamp and the matching MAC, i.e. the timestamp and
  the body), never the header's text: a list, an extra or unknown entry is refused outright
  (``linkloom.signing``), so no respelling of one signed request is a new delivery.
* GitHub: ``X-Hub-Signature-256`` over the body. GitHub signs no timestamp and no delivery id, so
  there are two keys: ``X-GitHub-Delivery`` (required; the forge's own redelivery) and the
  signed body (the same signed body under a new delivery id), the latter remembered for
  the scheduler's ``replay_window``.

Neither scheme signs the URL, so a signed request is valid at every trigger (of any flow) that
checks the same secret. The keys of what was signed (``v1``: timestamp and MAC; GitHub: the
body's MAC) are therefore server-wide: a delivery counts once at whichever trigger it reaches
first. The MAC depends on the secret, so triggers with different secrets never share a key. Only
GitHub's delivery id, which nothing signs and which the forge resends to the same hook, is kept
per trigger.

Each key is stored once (``webhook_deliveries.delivery_key`` is unique); the scheduler service
refuses a delivery any of whose keys it has. Inputs are rendered from the trigger's
``inputs`` templates with the context ``{"payload": <parsed JSON body>, "headers": {...}}``
(header names lower-cased).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from linkloom import signing
from linkloom.scheduler.errors import WebhookPayloadInvalid, WebhookRejected

GITHUB_DELIVERY_HEADER = "X-GitHub-Delivery"
MAX_BODY_BYTES = 5_000_000
_SIGNED_HEADERS = (
    signing.TIMESTAMP_HEADER,
    signing.SIGNATURE_HEADER,
    signing.GITHUB_HEADER,
    GITHUB_DELIVERY_HEADER,
)
# Headers a template may read; signatures and credentials are never exposed to templates.
_HIDDEN_HEADERS = frozenset(
    {
        signing.SIGNATURE_HEADER.lower(),
        signing.GITHUB_HEADER.lower(),
        "authorization",
        "cookie",
    }
)


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplayKey:
    """One de-duplication key of a verified delivery: a second request with it is a replay."""

    value: str
    server_wide: bool  # counts at every trigger (what was signed), else only at this trigger
    windowed: bool = False  # counts only within the scheduler's replay_window (GitHub's body)


@dataclass(frozen=True, slots=True, kw_only=True)
class Verified:
    scheme: str  # "v1" or "github"
    keys: tuple[ReplayKey, ...]  # store each once; a request with any stored key is a replay


def verify(
    secret: str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    now: float,
    tolerance: float = signing.DEFAULT_TOLERANCE,
) -> Verified:
    """Check the request's signature and return its replay key.

    Raises:
        WebhookRejected: no signature, a wrong one, a stale timestamp, or a GitHub request
            without a delivery id. The reason never reveals the expected value.
    """
    twice = signing.repeated(headers, *_SIGNED_HEADERS)
    if twice:
        raise WebhookRejected(reason=f"{twice[0]} was sent more than once")
    lower = {k.lower(): v for k, v in headers.items()}
    github = lower.get(signing.GITHUB_HEADER.lower())
    if lower.get(signing.SIGNATURE_HEADER.lower()):
        try:
            signed = signing.check(secret, body, lower, tolerance=tolerance, now=now)
        except signing.SignatureError as exc:
            raise WebhookRejected(reason=str(exc)) from exc
        v1 = _key("v1", signed.replay_key)
        return Verified(
            scheme="v1",
            # The per-trigger key of earlier releases too, so a delivery accepted in the 300 s
            # before an upgrade is not accepted again after it (drop in a later release).
            keys=(ReplayKey(value=v1, server_wide=True), ReplayKey(value=v1, server_wide=False)),
        )
    if github:
        try:
            signing.verify_github(secret, body, github)
        except signing.SignatureError as exc:
            raise WebhookRejected(reason=str(exc)) from exc
        delivery = lower.get(GITHUB_DELIVERY_HEADER.lower(), "").strip()
        if not delivery:
            raise WebhookRejected(
                reason=f"a {signing.GITHUB_HEADER} request needs a {GITHUB_DELIVERY_HEADER} "
                "header (replay protection)"
            )
        mac = github.strip().removeprefix("sha256=")  # verified: exactly the body's MAC
        return Verified(
            scheme="github",
            keys=(
                ReplayKey(value=_key("github", delivery), server_wide=False),
                ReplayKey(value=_key("github-mac", mac), server_wide=True, windowed=True),
                # The per-trigger body key of earlier releases, so a body received before an
                # upgrade still counts at its trigger until the replay window has passed.
                ReplayKey(
                    value="github-body:" + hashlib.sha256(body).hexdigest(),
                    server_wide=False,
                    windowed=True,
                ),
            ),
        )
    raise WebhookRejected(
        reason=f"missing signature: send {signing.TIMESTAMP_HEADER} and "
        f"{signing.SIGNATURE_HEADER} (or GitHub's {signing.GITHUB_HEADER})"
    )


def parse_payload(body: bytes) -> Any:
    """The JSON body (an empty body is ``{}``)."""
    if len(body) > MAX_BODY_BYTES:
        raise WebhookPayloadInvalid(reason=f"the body is larger than {MAX_BODY_BYTES} bytes")
    if not body.strip():
        return {}
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise WebhookPayloadInvalid(reason=f"the body is not JSON ({exc})") from exc


def map_inputs(
    templates: Mapping[str, str], *, payload: Any, headers: Mapping[str, str]
) -> dict[str, Any]:
    """Render the trigger's input templates; with no templates, an object payload is the inputs."""
    visible = {k.lower(): v for k, v in headers.items() if k.lower() not in _HIDDEN_HEADERS}
    if not templates:
        return dict(payload) if isinstance(payload, dict) else {"payload": payload}
    context = {"payload": payload, "headers": visible}
    out: dict[str, Any] = {}
    for name, template in templates.items():
        try:
            out[name] = render(template, context)
        except Exception as exc:  # any template failure is the sender's data, not our crash
            raise WebhookPayloadInvalid(reason=f"input {name!r}: {exc}") from exc
    return out


def render(value: Any, context: Mapping[str, Any]) -> Any:
    """Render with ``linkloom.flows.templates`` (sandboxed Jinja2; whole-value templates keep
    their JSON type), falling back to a local sandboxed renderer until that module exists."""
    try:
        from linkloom.flows import templates
    except ImportError:
        return _fallback_render(value, context)
    return templates.render(value, dict(context))


def _fallback_render(value: Any, context: Mapping[str, Any]) -> Any:
    import re

    from jinja2 import StrictUndefined
    from jinja2.sandbox import SandboxedEnvironment

    if not isinstance(value, str) or ("{{" not in value and "{%" not in value):
        return value
    env = SandboxedEnvironment(undefined=StrictUndefined)
    whole = re.fullmatch(r"\s*\{\{(.*)\}\}\s*", value, flags=re.DOTALL)
    if whole and "{{" not in whole.group(1):
        return env.compile_expression(whole.group(1).strip(), undefined_to_none=False)(**context)
    return env.from_string(value).render(**context)


def _key(scheme: str, value: str) -> str:
    return scheme + ":" + hashlib.sha256(value.encode()).hexdigest()
