"""Stubs: the answers a proposal gives for requests production never made.

A proposal that adds a call cannot be replayed past it: production never recorded an answer.
A stub supplies one, so the steps after the new call still run in the sandbox and are diffed.
Stubs live in the flows repo, for the whole flow in ``flows/<flow-id>/fixtures/stubs.yaml``::

    stubs:
      - name: notify                          # optional, shown in the diff
        method: POST                          # optional; default any method
        url: https://api.example.com/notify*  # a glob over the URL; the query string is ignored
                                              # unless the pattern has a "?"
        response:
          status: 200                         # default 200
          headers: {content-type: application/json}
          body:                               # JSON or text; strings may be templates
            status: SUCCESS
            output: {sent_to: "{{ request.body.inputs.email }}"}

or for one case under the ``stubs:`` key of its case file. Templates in a stub's response see
``request``: ``method``, ``url``, ``path``, ``query`` (a dict), ``headers`` and ``body`` (parsed
JSON, else text). A request that has a recording is always answered from the recording; a stub
answers only requests without one, before the sandbox falls back to "sent differently" (another
recording of the same endpoint) or "unrecorded request". Stubs answer the proposed version only:
replays of production never need them.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import yaml

from linkloom.sandbox.errors import InvalidFixture

_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "*"})
_KEYS = frozenset({"name", "method", "url", "response"})
_RESPONSE_KEYS = frozenset({"status", "headers", "body"})


@dataclass(frozen=True, slots=True, kw_only=True)
class Stub:
    """One rule: requests matching ``method`` and ``url`` get ``status``, ``headers``, ``body``."""

    name: str = ""
    method: str = "*"
    url: str
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None

    @property
    def label(self) -> str:
        return self.name or f"{self.method} {self.url}"

    def matches(self, method: str, url: str) -> bool:
        if self.method not in ("*", method.upper()):
            return False
        target = url if "?" in self.url else url.split("?", 1)[0]
        return fnmatch.fnmatchcase(target, self.url)

    def answer(self, request: httpx.Request, *, body: Any) -> httpx.Response:
        """The response to ``request`` (``body``: its parsed body), templates rendered.

        Raises:
            templates.TemplateError: a template in the stub's response does not render.
        """
        return self.reply(
            method=request.method,
            url=str(request.url),
            headers={k.lower(): v for k, v in request.headers.items()},
            body=body,
            request=request,
        )

    def reply(
        self,
        *,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: Any,
        request: httpx.Request | None = None,
    ) -> httpx.Response:
        """The response to a request seen as ``method``, ``url``, ``headers`` (lower-case names,
        as sent) and ``body`` (parsed), templates rendered; see ``answer``."""
        from linkloom.flows import templates  # Jinja: loaded only where a stub answers

        parts = urlsplit(url)
        view = {
            "method": method,
            "url": url,
            "path": parts.path,
            "query": dict(parse_qsl(parts.query, keep_blank_values=True)),
            "headers": dict(headers),
            "body": body,
        }
        rendered = templates.render(self.body, {"request": view})
        out = {k.lower(): v for k, v in self.headers.items()}
        if isinstance(rendered, str):
            out.setdefault("content-type", "text/plain")
        return http_response(status=self.status, headers=out, body=rendered, request=request)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"method": self.method, "url": self.url}
        if self.name:
            out["name"] = self.name
        response: dict[str, Any] = {"status": self.status}
        if self.headers:
            response["headers"] = dict(self.headers)
        if self.body is not None:
            response["body"] = self.body
        out["response"] = response
        return out


def http_response(
    *, status: int, headers: Mapping[str, str], body: Any, request: httpx.Request | None
) -> httpx.Response:
    """An answer with ``body``: text as is unless the content type says JSON, else JSON."""
    headers = dict(headers)
    if isinstance(body, str) and "json" not in headers.get("content-type", ""):
        content = body.encode()
    elif body is None:
        content = b""
    else:
        content = json.dumps(body, ensure_ascii=False).encode()
        headers.setdefault("content-type", "application/json")
    return httpx.Response(status_code=status, headers=headers, content=content, request=request)


def parse(data: Any, *, where: str) -> Stub:
    """One stub from its YAML/JSON form; ``InvalidFixture`` says what is wrong and where."""
    if not isinstance(data, Mapping):
        raise InvalidFixture(
            name=where, reason="a stub must be a mapping with 'url' and 'response'"
        )
    unknown = sorted(set(map(str, data)) - _KEYS)
    if unknown:
        raise InvalidFixture(
            name=where, reason=f"unknown stub field(s) {unknown}: use name, method, url, response"
        )
    url = data.get("url")
    if not isinstance(url, str) or not url.strip():
        raise InvalidFixture(
            name=where,
            reason="a stub needs 'url' (a URL or a glob such as https://api.example.com/*)",
        )
    method = str(data.get("method") or "*").upper()
    if method not in _METHODS:
        raise InvalidFixture(name=where, reason=f"unknown method {method!r} in a stub")
    response = data.get("response")
    if response is None:
        response = {}
    if not isinstance(response, Mapping):
        raise InvalidFixture(name=where, reason="a stub's 'response' must be a mapping")
    unknown = sorted(set(map(str, response)) - _RESPONSE_KEYS)
    if unknown:
        raise InvalidFixture(
            name=where, reason=f"unknown response field(s) {unknown}: use status, headers, body"
        )
    status = response.get("status", 200)
    if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
        raise InvalidFixture(name=where, reason=f"a stub's status must be 100–599, got {status!r}")
    headers = response.get("headers") or {}
    if not isinstance(headers, Mapping):
        raise InvalidFixture(name=where, reason="a stub's response headers must be a mapping")
    body = response.get("body")
    for text in _strings(body):
        if "{{" in text or "{%" in text:
            from linkloom.flows import templates  # Jinja: loaded only for templated stubs

            try:
                templates.parse(text)
            except templates.TemplateError as exc:
                raise InvalidFixture(name=where, reason=f"stub body: {exc.message}") from exc
    return Stub(
        name=str(data.get("name") or ""),
        method=method,
        url=url.strip(),
        status=status,
        headers={str(k): str(v) for k, v in headers.items()},
        body=body,
    )


def parse_list(data: Any, *, where: str) -> tuple[Stub, ...]:
    if data is None:
        return ()
    if not isinstance(data, list):
        raise InvalidFixture(name=where, reason="'stubs' must be a list of stubs")
    return tuple(parse(item, where=f"{where} stub {n + 1}") for n, item in enumerate(data))


def loads(text: str, *, where: str = "stubs.yaml") -> tuple[Stub, ...]:
    """The stubs of a ``stubs.yaml`` text (``stubs: [...]``, or the list itself)."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InvalidFixture(name=where, reason=f"not valid YAML: {exc}") from exc
    if isinstance(data, Mapping):
        unknown = sorted(set(map(str, data)) - {"stubs"})
        if unknown:
            raise InvalidFixture(name=where, reason=f"unknown key(s) {unknown}: use 'stubs'")
        data = data.get("stubs")
    return parse_list(data, where=where)


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, Mapping):
        return [s for k, v in value.items() for s in (*_strings(k), *_strings(v))]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []
