"""Inbound webhooks: signature checks, replay keys, and mapping a payload to flow inputs.

Two signature schemes are accepted (see ``linkloom.signing``):

* Link Loom ``v1``: ``X-Loom-Timestamp`` + ``X-Loom-Signature`` over ``"<ts>." + body``. Requests
  whose timestamp is more than ``tolerance`` seconds away from now are refused (stale), and the
  delivery key is what was verified (the timestamp and the matching MAC, i.e. the timestamp and
  the body), never the header's text: a list, an extra or unknown entry is refused outright
  (``linkloom.signing``), so no respelling of one signed request is a new delivery.
* GitHub: ``X-Hub-Signature-256`` over the body. GitHub signs no timestamp and no delivery id, so
  there are two keys: ``X-GitHub-Delivery`` (required; the forge's own redelivery) and the
  body's hash (the same signed body under a new delivery id), the latter remembered for
  the scheduler's ``replay_window``.

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
class Verified:
    scheme: str  # "v1" or "github"
    delivery_key: str  # store once; a second request with the same key is a replay
    body_key: str | None = None  # GitHub: the signed body; a replay within the window


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
        return Verified(scheme="v1", delivery_key=_key("v1", signed.replay_key))
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
        return Verified(
            scheme="github",
            delivery_key=_key("github", delivery),
            body_key="github-body:" + hashlib.sha256(body).hexdigest(),
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
