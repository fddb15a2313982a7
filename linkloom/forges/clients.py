"""Reporting to each forge's API: a commit status named ``linkloom`` and one pull request comment,
found again by its marker and edited in place.

| forge | status | comment |
| --- | --- | --- |
| GitHub | ``POST /repos/{o}/{r}/statuses/{sha}`` | ``GET``/``POST /repos/{o}/{r}/issues/{n}/comments``, ``PATCH /repos/{o}/{r}/issues/comments/{id}`` |
| GitLab | ``POST /projects/{id}/statuses/{sha}`` | ``GET``/``POST /projects/{id}/merge_requests/{iid}/notes``, ``PUT …/notes/{note_id}`` |
| Gitea | ``POST /repos/{o}/{r}/statuses/{sha}`` | ``GET``/``POST /repos/{o}/{r}/issues/{n}/comments``, ``PATCH /repos/{o}/{r}/issues/comments/{id}`` |

Every failure (connection, time-out, an error answer) is ``ForgeUnavailable``, whose message
names the call and the answer's status, never the token.
"""  # noqa: E501  -- the table reads better unwrapped

from __future__ import annotations

from typing import Any, Protocol
from urllib.parse import quote

import httpx

from linkloom.errors import Unavailable
from linkloom.forges import report
from linkloom.forges.models import ForgeKind

DEFAULT_API = {
    ForgeKind.GITHUB: "https://api.github.com",
    ForgeKind.GITLAB: "https://gitlab.com/api/v4",
    ForgeKind.GITEA: "https://gitea.com/api/v1",
}
TIMEOUT = httpx.Timeout(15.0, connect=5.0)


class ForgeUnavailable(Unavailable):
    """The {forge} API did not take the report ({call}): {reason}. Link Loom retries it."""

    code = "forge_unavailable"


class ForgeClient(Protocol):
    kind: ForgeKind

    async def set_status(
        self, *, repo: str, sha: str, state: str, description: str, url: str
    ) -> None: ...

    async def upsert_comment(
        self, *, repo: str, number: int, body: str, comment_id: str | None
    ) -> str: ...

    async def aclose(self) -> None: ...


class _HttpForge:
    kind: ForgeKind

    def __init__(
        self, *, api_url: str, token: str, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.api_url = (api_url or DEFAULT_API[self.kind]).rstrip("/")
        self.http = httpx.AsyncClient(
            base_url=self.api_url,
            headers={**self._auth(token), "User-Agent": "linkloom", **self._extra_headers()},
            timeout=TIMEOUT,
            transport=transport,
            follow_redirects=False,
        )

    def _auth(self, token: str) -> dict[str, str]:
        raise NotImplementedError

    def _extra_headers(self) -> dict[str, str]:
        return {}

    async def aclose(self) -> None:
        await self.http.aclose()

    async def _call(self, method: str, path: str, *, json: Any = None) -> Any:
        call = f"{method} {path.split('?')[0]}"
        try:
            response = await self.http.request(method, path, json=json)
        except httpx.HTTPError as exc:
            raise ForgeUnavailable(
                forge=self.kind.value, call=call, reason=f"{type(exc).__name__}: {exc}"
            ) from None
        if response.status_code >= 400:
            raise ForgeUnavailable(
                forge=self.kind.value,
                call=call,
                reason=f"HTTP {response.status_code} {_message(response)}",
            )
        return response.json() if response.content else None

    async def _find(self, path: str, marker: str) -> str | None:
        found = await self._call("GET", path)
        for item in found or []:
            if marker in str(item.get("body") or ""):
                return str(item["id"])
        return None


class GitHubClient(_HttpForge):
    """GitHub (and GitHub Enterprise: set its ``https://host/api/v3``)."""

    kind = ForgeKind.GITHUB

    def _auth(self, token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    def _extra_headers(self) -> dict[str, str]:
        return {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"}

    async def set_status(
        self, *, repo: str, sha: str, state: str, description: str, url: str
    ) -> None:
        await self._call(
            "POST",
            f"/repos/{repo}/statuses/{sha}",
            json={"state": state, "target_url": url, "description": description,
                  "context": report.CONTEXT},
        )  # fmt: skip

    async def upsert_comment(
        self, *, repo: str, number: int, body: str, comment_id: str | None
    ) -> str:
        comment_id = comment_id or await self._find(self._listing(repo, number), report.MARKER)
        if comment_id:
            await self._call("PATCH", f"/repos/{repo}/issues/comments/{comment_id}",
                             json={"body": body})  # fmt: skip
            return comment_id
        created = await self._call("POST", f"/repos/{repo}/issues/{number}/comments",
                                   json={"body": body})  # fmt: skip
        return str(created["id"])

    def _listing(self, repo: str, number: int) -> str:
        return f"/repos/{repo}/issues/{number}/comments?per_page=100"


class GiteaClient(GitHubClient):
    """Gitea and Forgejo: GitHub's paths for statuses and comments, their own token header."""

    kind = ForgeKind.GITEA

    def _auth(self, token: str) -> dict[str, str]:
        return {"Authorization": f"token {token}"}

    def _extra_headers(self) -> dict[str, str]:
        return {"Accept": "application/json"}

    def _listing(self, repo: str, number: int) -> str:
        return f"/repos/{repo}/issues/{number}/comments?limit=50"


_GITLAB_STATES = {"pending": "running", "success": "success", "failure": "failed",
                  "error": "failed"}  # fmt: skip


class GitLabClient(_HttpForge):
    """GitLab (gitlab.com or self-hosted: set ``https://host/api/v4``)."""

    kind = ForgeKind.GITLAB

    def _auth(self, token: str) -> dict[str, str]:
        return {"PRIVATE-TOKEN": token}

    @staticmethod
    def _project(repo: str) -> str:
        return quote(repo, safe="")

    async def set_status(
        self, *, repo: str, sha: str, state: str, description: str, url: str
    ) -> None:
        await self._call(
            "POST",
            f"/projects/{self._project(repo)}/statuses/{sha}",
            json={"state": _GITLAB_STATES[state], "name": report.CONTEXT, "target_url": url,
                  "description": description},
        )  # fmt: skip

    async def upsert_comment(
        self, *, repo: str, number: int, body: str, comment_id: str | None
    ) -> str:
        notes = f"/projects/{self._project(repo)}/merge_requests/{number}/notes"
        comment_id = comment_id or await self._find(f"{notes}?per_page=100", report.MARKER)
        if comment_id:
            await self._call("PUT", f"{notes}/{comment_id}", json={"body": body})
            return comment_id
        created = await self._call("POST", notes, json={"body": body})
        return str(created["id"])


def make_client(
    kind: ForgeKind, *, api_url: str, token: str, transport: httpx.AsyncBaseTransport | None = None
) -> ForgeClient:
    if kind is ForgeKind.GITLAB:
        return GitLabClient(api_url=api_url, token=token, transport=transport)
    if kind is ForgeKind.GITEA:
        return GiteaClient(api_url=api_url, token=token, transport=transport)
    return GitHubClient(api_url=api_url, token=token, transport=transport)


def _message(response: httpx.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(data, dict):
        return str(data.get("message") or data.get("error") or "")[:200]
    return ""
