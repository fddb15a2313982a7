"""A local forge double: it answers the calls Link Loom makes to report on pull requests, the way
GitHub, GitLab or Gitea answer them, and checks every request it gets.

* ``github``: every request is validated against GitHub's official OpenAPI description (npm
  ``@octokit/openapi``, installed by ``scripts/provision-git`` into tests/support/forge) with
  ``openapi-core``; a request that does not match is answered 422 and kept in ``problems``.
* ``gitlab`` / ``gitea``: the documented request shapes of commit statuses and notes/comments
  (paths, JSON bodies, enum values, the token header), checked with ``jsonschema``.

It keeps ``statuses`` (per sha, in order) and ``comments`` (id → body, with every edit), and
fails on demand: ``fail_next(3)`` answers the next three calls 503; ``down = True`` answers all.

    with ForgeDouble("github", token="t0ken") as forge:
        forge.api_url                         # LOOM_FORGE__API_URL
        forge.statuses["<sha>"][-1]["state"]  # "success"
"""

from __future__ import annotations

import json
import re
import threading
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import jsonschema

from tests.support.servers import free_port

NPM = Path(__file__).resolve().parent / "forge" / "node_modules" / "@octokit"
OPENAPI = NPM / "openapi" / "generated" / "api.github.com.json"
WEBHOOK_EXAMPLES = NPM / "webhooks-examples" / "api.github.com" / "index.json"
GITHUB_SERVER = "https://api.github.com"


def npm_packages_installed() -> bool:
    return OPENAPI.exists() and WEBHOOK_EXAMPLES.exists()


@cache
def github_openapi() -> Any:
    from openapi_core import Config, OpenAPI

    spec = json.loads(OPENAPI.read_text())
    return OpenAPI.from_dict(spec, config=Config(spec_validator_cls=None))


@cache
def webhook_examples() -> dict[str, list[dict[str, Any]]]:
    """GitHub's published example payloads by event name (``pull_request``, ``push``, …)."""
    data = json.loads(WEBHOOK_EXAMPLES.read_text())
    return {entry["name"]: entry["examples"] for entry in data}


class _Request:
    """The minimal request object ``openapi-core`` validates."""

    def __init__(self, method: str, path: str, query: str, body: bytes, headers: Any) -> None:
        from openapi_core.datatypes import RequestParameters
        from werkzeug.datastructures import Headers, ImmutableMultiDict

        self.method = method.lower()
        self.host_url = GITHUB_SERVER
        self.path = path
        self.full_url_pattern = GITHUB_SERVER + path
        self.body = body or None
        self.content_type = headers.get("Content-Type", "application/json").split(";")[0]
        self.parameters = RequestParameters(
            query=ImmutableMultiDict(parse_qsl(query)),
            header=Headers(list(headers.items())),
            cookie=ImmutableMultiDict(),
            path={},
        )


_STATUS_STATES = {
    "gitlab": ["pending", "running", "success", "failed", "canceled", "skipped"],
    "gitea": ["pending", "success", "error", "failure", "warning"],
}
_SHAPES: dict[str, list[tuple[str, str, dict[str, Any] | None]]] = {
    # (method, path pattern, JSON schema of the body) from each forge's REST API documentation
    "gitlab": [
        ("POST", r"/projects/[^/]+/statuses/[0-9a-f]{40}", {
            "type": "object", "required": ["state"], "additionalProperties": False,
            "properties": {"state": {"enum": _STATUS_STATES["gitlab"]},
                           "name": {"type": "string"}, "context": {"type": "string"},
                           "target_url": {"type": "string"}, "description": {"type": "string"},
                           "ref": {"type": "string"}, "coverage": {"type": "number"},
                           "pipeline_id": {"type": "integer"}}}),
        ("GET", r"/projects/[^/]+/merge_requests/\d+/notes", None),
        ("POST", r"/projects/[^/]+/merge_requests/\d+/notes", {
            "type": "object", "required": ["body"], "additionalProperties": False,
            "properties": {"body": {"type": "string", "maxLength": 1_000_000},
                           "internal": {"type": "boolean"}}}),
        ("PUT", r"/projects/[^/]+/merge_requests/\d+/notes/\d+", {
            "type": "object", "required": ["body"], "additionalProperties": False,
            "properties": {"body": {"type": "string", "maxLength": 1_000_000}}}),
    ],
    "gitea": [
        ("POST", r"/repos/[^/]+/[^/]+/statuses/[0-9a-f]{40}", {
            "type": "object", "additionalProperties": False,
            "properties": {"state": {"enum": _STATUS_STATES["gitea"]},
                           "context": {"type": "string"}, "target_url": {"type": "string"},
                           "description": {"type": "string"}}}),
        ("GET", r"/repos/[^/]+/[^/]+/issues/\d+/comments", None),
        ("POST", r"/repos/[^/]+/[^/]+/issues/\d+/comments", {
            "type": "object", "required": ["body"], "additionalProperties": False,
            "properties": {"body": {"type": "string"}}}),
        ("PATCH", r"/repos/[^/]+/[^/]+/issues/comments/\d+", {
            "type": "object", "required": ["body"], "additionalProperties": False,
            "properties": {"body": {"type": "string"}}}),
    ],
}  # fmt: skip


class ForgeDouble:
    def __init__(self, kind: str, *, token: str) -> None:
        self.kind = kind
        self.token = token
        self.port = free_port()
        self.requests: list[dict[str, Any]] = []
        self.problems: list[str] = []
        self.statuses: dict[str, list[dict[str, Any]]] = {}
        self.comments: dict[int, dict[str, Any]] = {}  # id → {number, body, edits}
        self.down = False
        self._fail = 0
        self._lock = threading.Lock()
        self._next_id = 1000
        self._server: ThreadingHTTPServer | None = None

    @property
    def api_url(self) -> str:
        base = f"http://127.0.0.1:{self.port}"
        return {"github": base, "gitlab": f"{base}/api/v4", "gitea": f"{base}/api/v1"}[self.kind]

    def fail_next(self, count: int) -> None:
        with self._lock:
            self._fail = count

    def comment_bodies(self, number: int) -> list[str]:
        return [c["body"] for c in self.comments.values() if c["number"] == number]

    def __enter__(self) -> ForgeDouble:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _any(self) -> None:
                outer._handle(self)

            do_GET = do_POST = do_PATCH = do_PUT = _any

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    # ---------------------------------------------------------------- one request

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        parts = urlsplit(h.path)
        prefix = {"github": "", "gitlab": "/api/v4", "gitea": "/api/v1"}[self.kind]
        path = parts.path.removeprefix(prefix)
        record = {"method": h.command, "path": path, "body": body.decode() if body else ""}
        with self._lock:
            self.requests.append(record)
            failing = self.down or self._fail > 0
            if self._fail > 0:
                self._fail -= 1
        if failing:
            return self._answer(h, 503, {"message": "Service Unavailable"})
        problem = self._auth_problem(h) or self._shape_problem(h, path, parts.query, body)
        if problem:
            self.problems.append(f"{h.command} {path}: {problem}")
            status = 401 if problem.startswith("auth") else 422
            return self._answer(h, status, {"message": problem})
        data = json.loads(body) if body else None
        status, answer = self._act(h.command, unquote(path), data)
        self._answer(h, status, answer)

    def _auth_problem(self, h: BaseHTTPRequestHandler) -> str:
        expected = {
            "github": ("Authorization", f"Bearer {self.token}"),
            "gitlab": ("PRIVATE-TOKEN", self.token),
            "gitea": ("Authorization", f"token {self.token}"),
        }[self.kind]
        if h.headers.get(expected[0]) != expected[1]:
            return f"auth: expected the {expected[0]} header with the token"
        return ""

    def _shape_problem(self, h: BaseHTTPRequestHandler, path: str, query: str, body: bytes) -> str:
        if self.kind == "github":
            try:
                github_openapi().validate_request(_Request(h.command, path, query, body, h.headers))
            except Exception as exc:  # openapi-core's errors all say what is wrong
                cause = getattr(exc, "__cause__", None)
                return f"{type(exc).__name__}: {exc} {cause or ''}".strip()
            return ""
        for method, pattern, schema in _SHAPES[self.kind]:
            if method == h.command and re.fullmatch(pattern, path):
                if schema is not None:
                    try:
                        jsonschema.validate(json.loads(body or b"null"), schema)
                    except (ValueError, jsonschema.ValidationError) as exc:
                        return f"body: {getattr(exc, 'message', exc)}"
                return ""
        return f"no documented {self.kind} operation is {h.command} {path}"

    def _act(self, method: str, path: str, data: Any) -> tuple[int, Any]:
        with self._lock:
            status = re.fullmatch(r".*/statuses/([0-9a-f]{40})", path)
            if status and method == "POST":
                entry = dict(data)
                self.statuses.setdefault(status[1], []).append(entry)
                return 201, {"id": len(self.statuses[status[1]]), **entry}
            listing = re.fullmatch(r".*/(?:issues|merge_requests)/(\d+)/(?:comments|notes)", path)
            if listing and method == "GET":
                number = int(listing[1])
                return 200, [
                    {"id": cid, "body": c["body"]}
                    for cid, c in self.comments.items()
                    if c["number"] == number
                ]
            if listing and method == "POST":
                self._next_id += 1
                self.comments[self._next_id] = {
                    "number": int(listing[1]), "body": data["body"], "edits": 0,
                }  # fmt: skip
                return 201, {"id": self._next_id, "body": data["body"]}
            edit = re.fullmatch(r".*/(?:comments|notes)/(\d+)", path)
            if edit and method in ("PATCH", "PUT"):
                comment = self.comments.get(int(edit[1]))
                if comment is None:
                    return 404, {"message": "Not Found"}
                comment["body"] = data["body"]
                comment["edits"] += 1
                return 200, {"id": int(edit[1]), "body": data["body"]}
        return 404, {"message": "Not Found"}

    @staticmethod
    def _answer(h: BaseHTTPRequestHandler, status: int, data: Any) -> None:
        payload = json.dumps(data).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(payload)))
        h.end_headers()
        h.wfile.write(payload)


def github_pull_request(
    action: str,
    *,
    repo: str,
    number: int,
    head_sha: str,
    head_ref: str,
    base_ref: str = "main",
    title: str = "Change flows",
    user: str = "octocat",
    merged_by: str | None = None,
    merge_commit: str | None = None,
) -> dict[str, Any]:
    """GitHub's published ``pull_request`` example for ``action``, about our repository."""
    example = next(e for e in webhook_examples()["pull_request"] if e["action"] == action)
    payload = json.loads(json.dumps(example))
    pr = payload["pull_request"]
    owner, name = repo.split("/")
    payload["number"] = pr["number"] = number
    payload["repository"]["full_name"] = repo
    payload["repository"]["name"] = name
    payload["repository"]["owner"]["login"] = owner
    pr["html_url"] = f"https://github.com/{repo}/pull/{number}"
    pr["title"] = title
    pr["user"]["login"] = user
    payload["sender"]["login"] = merged_by or user
    pr["head"]["sha"] = head_sha
    pr["head"]["ref"] = head_ref
    pr["base"]["ref"] = base_ref
    if merged_by is not None:
        pr["merged"] = True
        pr["merged_by"] = {**pr["user"], "login": merged_by}
        pr["merge_commit_sha"] = merge_commit
    return payload


def github_push(
    *, repo: str, ref: str, before: str, after: str, pusher: str = "octocat", forced: bool = False
) -> dict[str, Any]:
    """GitHub's published ``push`` example to a branch, about our repository."""
    example = next(e for e in webhook_examples()["push"] if e["ref"].startswith("refs/heads/"))
    payload = json.loads(json.dumps(example))
    payload.update(ref=ref, before=before, after=after, forced=forced)
    payload["repository"]["full_name"] = repo
    payload["pusher"]["name"] = pusher
    payload["sender"]["login"] = pusher
    return payload


def signed(
    kind: str, event: str, payload: dict[str, Any], *, secret: str, delivery: str
) -> tuple[bytes, dict[str, str]]:
    """The body and headers the forge would send: signed (GitHub, Gitea) or with the token
    (GitLab), with its event and delivery headers."""
    import hashlib
    import hmac

    body = json.dumps(payload).encode()
    mac = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    headers = {"Content-Type": "application/json"}
    if kind == "github":
        headers.update({"X-GitHub-Event": event, "X-GitHub-Delivery": delivery,
                        "X-Hub-Signature-256": f"sha256={mac}"})  # fmt: skip
    elif kind == "gitea":
        headers.update({"X-Gitea-Event": event, "X-Gitea-Delivery": delivery,
                        "X-GitHub-Event": event, "X-Gitea-Signature": mac,
                        "X-Hub-Signature-256": f"sha256={mac}"})  # fmt: skip
    else:
        headers.update({"X-Gitlab-Event": event, "X-Gitlab-Token": secret,
                        "Idempotency-Key": delivery})  # fmt: skip
    return body, headers
