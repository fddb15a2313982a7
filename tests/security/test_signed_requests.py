"""Hostile signed requests against a real server (uvicorn, SQLite and PostgreSQL): every way of
respelling, replaying or re-timing one signed request is refused or counts once.

Covered: flow webhooks (Link Loom v1 and GitHub style), async-step callbacks and heartbeats,
forge webhooks (GitHub, Gitea, GitLab), and ``linkloom.signing.verify`` itself, which the Python
SDK and notification receivers use. Issue 17, findings 1 and 2; docs/security.md, "Signed
requests and replay".
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

from linkloom import config, logs, signing, wiring
from linkloom.api.app import create_app
from tests.acceptance.api.api_harness import BACKEND, FakeBackend
from tests.support import databases
from tests.support.git_remotes import BareRemote
from tests.support.servers import ThreadedUvicorn

pytestmark = pytest.mark.timeout(180)

KEY = "security-suite-signing-key"
FORGE_SECRET = "security-suite-forge-secret"
REPO = "acme/flows"

HOOKS = {
    "id": "hooks",
    "inputs": {"ref": {"type": "string"}},
    "triggers": [{"type": "webhook", "id": "push", "inputs": {"ref": "{{ payload.ref }}"}}],
    "steps": [{"id": "fetch", "type": "http", "url": f"{BACKEND}/fetch"}],
}
MIRROR = {  # another flow: "push" checks the same server secret as hooks/push, "own" its own
    "id": "mirror",
    "inputs": {"ref": {"type": "string"}},
    "triggers": [
        {"type": "webhook", "id": "push", "inputs": {"ref": "{{ payload.ref }}"}},
        {"type": "webhook", "id": "own", "secret": "MIRROR_HOOK",
         "inputs": {"ref": "{{ payload.ref }}"}},
    ],
    "steps": [{"id": "fetch", "type": "http", "url": f"{BACKEND}/fetch"}],
}  # fmt: skip
MIRROR_SECRET = "security-suite-mirror-secret"
SLOW = {
    "id": "slow",
    "triggers": [{"type": "webhook", "id": "go"}],
    "steps": [
        {"id": "wait", "type": "http", "url": f"{BACKEND}/async", "mode": "async",
         "heartbeat_timeout": "60s", "timeout": "10m"},
    ],
}  # fmt: skip


@dataclass
class Loom:
    url: str
    backend: FakeBackend
    remote: BareRemote
    forge: str

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30)

    def runs(self, flow_id: str) -> int:
        with self.client() as client:
            answer = client.get("/api/v1/runs", params={"flow": flow_id, "limit": 200})
        answer.raise_for_status()
        return len(answer.json()["items"])


@contextmanager
def _start(tmp_path: Path, db: str, forge: str) -> Iterator[Loom]:
    remote = BareRemote.create(
        tmp_path / "srv" / "flows.git",
        seed={
            "flows/hooks/flow.yaml": yaml.safe_dump(HOOKS, sort_keys=False),
            "flows/slow/flow.yaml": yaml.safe_dump(SLOW, sort_keys=False),
            "flows/mirror/flow.yaml": yaml.safe_dump(MIRROR, sort_keys=False),
        },
    )
    backend = FakeBackend()
    http = ThreadedUvicorn()
    if db == "postgresql":
        database = databases.fresh_database("security", migrate=True)
        url = database.__enter__()
    else:
        database, url = None, databases.sqlite_url(tmp_path / "loom.db")
    settings = config.load_settings(
        home=tmp_path / "home",
        database={"url": url},
        server={"auth": False, "public_url": http.url, "port": http.port},
        engine={"poll_interval": 0.05},
        security={"signing_key": KEY},
        secrets={"MIRROR_HOOK": MIRROR_SECRET},
        flows={"remote": remote.file_url, "poll_seconds": 0},
        forge={"kind": forge, "api_url": "http://127.0.0.1:9", "token": "t",
               "webhook_secret": FORGE_SECRET, "repo": REPO, "report_max_attempts": 1},
    )  # fmt: skip
    logs.configure(
        settings, fmt="json", level="WARNING", stream=(tmp_path / "server.log").open("w")
    )
    services = wiring.build_services(settings, http_transport=httpx.MockTransport(backend.handler))
    try:
        with http.serving(create_app(settings, services)):
            yield Loom(url=http.url, backend=backend, remote=remote, forge=forge)
    finally:
        logs.reset()
        if database is not None:
            database.__exit__(None, None, None)


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest) -> str:
    if request.param == "postgresql":
        databases.require_postgres()
    return str(request.param)


@pytest.fixture
def loom(tmp_path: Path, db: str) -> Iterator[Loom]:
    with _start(tmp_path, db, "github") as running:
        yield running


# ---- mutations ---------------------------------------------------------------------------


def respellings(sig: str) -> dict[str, str]:
    """Ways to send one valid ``v1=`` entry that the protocol refuses (docs/protocol.md, 4)."""
    return {
        "extra entry": f"{sig},x",
        "extra bad v1": f"{sig},v1=deadbeef",
        "reordered bad v1 first": f"v1=deadbeef,{sig}",
        "unknown scheme first": f"v0=abc,{sig}",
        "unknown scheme after": f"{sig},v2={'0' * 64}",
        "duplicated": f"{sig},{sig}",
        "duplicated with space": f"{sig}, {sig}",
        "upper-case hex": "v1=" + sig.removeprefix("v1=").upper(),
        "upper-case scheme": "V1=" + sig.removeprefix("v1="),
        "semicolon list": f"{sig};{sig}",
        "empty entry": f"{sig},",
    }


def v1(body: bytes, *, at: float | None = None, key: str = KEY) -> dict[str, str]:
    return {"Content-Type": "application/json", **signing.sign(key, body, timestamp=at)}


def github(body: bytes, delivery: str, *, secret: str = KEY) -> dict[str, str]:
    mac = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"Content-Type": "application/json", "X-Hub-Signature-256": f"sha256={mac}",
            "X-GitHub-Delivery": delivery, "X-GitHub-Event": "push"}  # fmt: skip


def body_for(ref: str) -> bytes:
    return json.dumps({"ref": ref}).encode()


# ---- flow webhooks, Link Loom v1 (finding 1) -----------------------------------------------


def test_a_webhook_signature_respelled_is_refused_and_creates_nothing(loom: Loom) -> None:
    """Finding 1: each respelling of a valid signature used to start a new run."""
    url = "/api/v1/webhooks/hooks/push"
    with loom.client() as client:
        body = body_for("main")
        headers = v1(body)
        assert client.post(url, content=body, headers=headers).status_code == 201
        for name, value in respellings(headers[signing.SIGNATURE_HEADER]).items():
            answer = client.post(url, content=body, headers={**headers, "X-Loom-Signature": value})
            assert answer.status_code == 401, (name, answer.status_code, answer.text)
            assert answer.json()["code"] == "webhook_rejected"
        replay = client.post(url, content=body, headers=headers)
        assert replay.status_code == 409
        assert replay.json()["code"] == "webhook_replayed"

        fresh = body_for("fresh")  # never sent validly: respellings create nothing either
        fresh_headers = v1(fresh)
        for name, value in respellings(fresh_headers[signing.SIGNATURE_HEADER]).items():
            answer = client.post(
                url, content=fresh, headers={**fresh_headers, "X-Loom-Signature": value}
            )
            assert answer.status_code == 401, (name, answer.status_code)
    assert loom.runs("hooks") == 1


def test_a_webhook_signature_header_sent_twice_is_refused(loom: Loom) -> None:
    body = body_for("twice")
    headers = v1(body)
    sig = headers.pop(signing.SIGNATURE_HEADER)
    with loom.client() as client:
        for second in (sig, "v1=deadbeef"):
            pairs = [*headers.items(), ("X-Loom-Signature", sig), ("X-Loom-Signature", second)]
            answer = client.post("/api/v1/webhooks/hooks/push", content=body, headers=pairs)
            assert answer.status_code == 401, answer.text
            assert "more than once" in answer.json()["detail"]
    assert loom.runs("hooks") == 0


def test_a_webhook_timestamp_stale_future_or_not_whole_seconds_is_refused(loom: Loom) -> None:
    url = "/api/v1/webhooks/hooks/push"
    now = time.time()
    with loom.client() as client:
        for shift in (-400, 400, -3600, 86400):
            body = body_for(f"shift{shift}")
            answer = client.post(url, content=body, headers=v1(body, at=now + shift))
            assert answer.status_code == 401, shift
            assert "away from now" in answer.json()["detail"]
        body = body_for("fraction")
        ts = str(int(now))
        for stamp in (f"{ts}.0", f"+{ts}", f"{ts}e0", f"-{ts}", ""):
            sig = "v1=" + hmac.new(KEY.encode(), f"{stamp}.".encode() + body,
                                   hashlib.sha256).hexdigest()  # fmt: skip
            answer = client.post(
                url, content=body, headers={"X-Loom-Timestamp": stamp, "X-Loom-Signature": sig}
            )
            assert answer.status_code == 401, stamp
        assert loom.runs("hooks") == 0
        body = body_for("skewed")
        inside = client.post(url, content=body, headers=v1(body, at=now - 200))
        assert inside.status_code == 201, inside.text
        replay = client.post(url, content=body, headers=v1(body, at=now - 200))
        assert replay.status_code == 409
        other_second = client.post(url, content=body, headers=v1(body, at=now - 199))
        assert other_second.status_code == 201, "a new timestamp is a new signed request"
    assert loom.runs("hooks") == 2


# ---- flow webhooks, GitHub style (finding 2) -----------------------------------------------


def test_a_github_style_webhook_body_under_a_new_delivery_id_is_a_replay(loom: Loom) -> None:
    """Finding 2: GitHub's HMAC covers the body only, so the delivery id alone was the key."""
    url = "/api/v1/webhooks/hooks/push"
    body = body_for("gh")
    with loom.client() as client:
        assert client.post(url, content=body, headers=github(body, "d-1")).status_code == 201
        for delivery in ("d-1", "d-2", "d-3"):
            again = client.post(url, content=body, headers=github(body, delivery))
            assert again.status_code == 409, (delivery, again.text)
            assert again.json()["code"] == "webhook_replayed"
        other = body_for("gh-2")
        assert client.post(url, content=other, headers=github(other, "d-4")).status_code == 201
        sig = github(body, "x")["X-Hub-Signature-256"]
        for value in (f"{sig},x", f"{sig},{sig}", f"sha1=abc,{sig}", sig.upper()):
            fresh = body_for(f"gh-{value[-3:]}")
            headers = {**github(fresh, f"new-{value[-3:]}"), "X-Hub-Signature-256": value}
            answer = client.post(url, content=fresh, headers=headers)
            assert answer.status_code == 401, (value, answer.text)
        unsigned_id = github(body_for("gh-5"), "")
        answer = client.post(url, content=body_for("gh-5"), headers=unsigned_id)
        assert answer.status_code == 401, "a GitHub-style request needs its delivery id"
    assert loom.runs("hooks") == 2


# ---- flow webhooks: one delivery, one run on the whole server ------------------------------


def test_a_v1_delivery_replayed_at_another_flows_trigger_with_the_same_secret_is_refused(
    loom: Loom,
) -> None:
    """v1 signs ``<timestamp>.<body>``, not the URL: each trigger used to keep its own replay
    keys, so a captured delivery started one more run at every trigger sharing the secret."""
    body = body_for("main")
    headers = v1(body)
    with loom.client() as client:
        first = client.post("/api/v1/webhooks/hooks/push", content=body, headers=headers)
        assert first.status_code == 201, first.text
        replay = client.post("/api/v1/webhooks/mirror/push", content=body, headers=headers)
        assert replay.status_code == 409, replay.text
        assert replay.json()["code"] == "webhook_replayed"
        assert "already accepted" in replay.json()["detail"]
        # The same body and second signed with another secret is another signed request.
        own = v1(body, at=int(headers[signing.TIMESTAMP_HEADER]), key=MIRROR_SECRET)
        other = client.post("/api/v1/webhooks/mirror/own", content=body, headers=own)
        assert other.status_code == 201, other.text
        again = client.post("/api/v1/webhooks/hooks/push", content=body, headers=own)
        assert again.status_code == 401, "a secret is checked only where it is configured"
    assert loom.runs("hooks") == 1
    assert loom.runs("mirror") == 1


def test_a_github_style_body_replayed_at_another_flows_trigger_with_the_same_secret_is_refused(
    loom: Loom,
) -> None:
    body = body_for("gh-shared")
    with loom.client() as client:
        headers = github(body, "d-1")
        first = client.post("/api/v1/webhooks/hooks/push", content=body, headers=headers)
        assert first.status_code == 201, first.text
        for delivery in ("d-1", "d-2"):
            replay = client.post(
                "/api/v1/webhooks/mirror/push", content=body, headers=github(body, delivery)
            )
            assert replay.status_code == 409, (delivery, replay.text)
            assert replay.json()["code"] == "webhook_replayed"
        own = github(body, "d-1", secret=MIRROR_SECRET)  # same body and id, another secret
        other = client.post("/api/v1/webhooks/mirror/own", content=body, headers=own)
        assert other.status_code == 201, other.text
    assert loom.runs("hooks") == 1
    assert loom.runs("mirror") == 1


# ---- async-step callbacks and heartbeats ---------------------------------------------------


def _waiting_step(loom: Loom, client: httpx.Client) -> dict[str, str]:
    body = b"{}"
    started = client.post("/api/v1/webhooks/slow/go", content=body, headers=v1(body))
    assert started.status_code == 201, started.text
    deadline = time.monotonic() + 30
    while not loom.backend.callbacks:
        assert time.monotonic() < deadline, "the async step was never delivered"
        time.sleep(0.05)
    return loom.backend.callbacks[0]


def test_callbacks_respelled_or_re_timed_are_refused_and_a_replay_is_a_409(loom: Loom) -> None:
    with loom.client() as client:
        urls = _waiting_step(loom, client)
        result = json.dumps({"status": "SUCCESS", "output": {"n": 1}}).encode()
        headers = v1(result)
        for name, value in respellings(headers[signing.SIGNATURE_HEADER]).items():
            answer = client.post(
                urls["url"], content=result, headers={**headers, "X-Loom-Signature": value}
            )
            assert answer.status_code == 401, (name, answer.status_code, answer.text)
            assert answer.json()["code"] == "signature_rejected"
        for shift in (-400, 400):
            answer = client.post(
                urls["url"], content=result, headers=v1(result, at=time.time() + shift)
            )
            assert answer.status_code == 401, shift
        forged = client.post(urls["url"], content=result, headers=v1(result, key="not-the-key"))
        assert forged.status_code == 401
        accepted = client.post(urls["url"], content=result, headers=headers)
        assert accepted.status_code == 200, accepted.text
        replay = client.post(urls["url"], content=result, headers=headers)
        assert replay.status_code == 409
        assert replay.json()["code"] == "callback_already_used"
        beat = client.post(urls["heartbeat_url"], content=b"{}", headers=v1(b"{}"))
        assert beat.status_code == 409, "the attempt has its result"


def test_a_replayed_heartbeat_does_not_move_the_deadline(loom: Loom) -> None:
    """A captured heartbeat replayed inside the 300 s window used to keep the step alive."""
    with loom.client() as client:
        urls = _waiting_step(loom, client)
        beat_headers = v1(b"{}")
        for name, value in respellings(beat_headers[signing.SIGNATURE_HEADER]).items():
            answer = client.post(
                urls["heartbeat_url"], content=b"{}",
                headers={**beat_headers, "X-Loom-Signature": value},
            )  # fmt: skip
            assert answer.status_code == 401, (name, answer.status_code)
        for shift in (-400, 400):
            re_timed = v1(b"{}", at=time.time() + shift)
            answer = client.post(urls["heartbeat_url"], content=b"{}", headers=re_timed)
            assert answer.status_code == 401, shift
        first = client.post(urls["heartbeat_url"], content=b"{}", headers=beat_headers)
        assert first.status_code == 200, first.text
        time.sleep(1.2)
        replayed = client.post(urls["heartbeat_url"], content=b"{}", headers=beat_headers)
        assert replayed.status_code == 200, "a replay is answered like a retry, not as an error"
        assert replayed.json()["deadline"] == first.json()["deadline"]
        older = v1(b"{}", at=int(beat_headers[signing.TIMESTAMP_HEADER]) - 5)
        earlier = client.post(urls["heartbeat_url"], content=b"{}", headers=older)
        assert earlier.json()["deadline"] == first.json()["deadline"]
        fresh = client.post(urls["heartbeat_url"], content=b"{}", headers=v1(b"{}"))
        assert fresh.status_code == 200
        assert fresh.json()["deadline"] > first.json()["deadline"]


# ---- forge webhooks --------------------------------------------------------------------------


def _forge_headers(kind: str, body: bytes, delivery: str) -> dict[str, str]:
    mac = hmac.new(FORGE_SECRET.encode(), body, hashlib.sha256).hexdigest()
    if kind == "github":
        return {"X-GitHub-Event": "push", "X-GitHub-Delivery": delivery,
                "X-Hub-Signature-256": f"sha256={mac}"}  # fmt: skip
    if kind == "gitea":
        return {"X-Gitea-Event": "push", "X-Gitea-Delivery": delivery, "X-Gitea-Signature": mac}
    return {"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": FORGE_SECRET,
            "Idempotency-Key": delivery}  # fmt: skip


def _credential(kind: str) -> str:
    return {"github": "X-Hub-Signature-256", "gitea": "X-Gitea-Signature"}.get(
        kind, "X-Gitlab-Token"
    )


def _signature_respellings(kind: str, headers: dict[str, str]) -> list[dict[str, str]]:
    name = _credential(kind)
    value = headers[name]
    bad = [f"{value},x", f"{value},{value}", f"x,{value}", value.upper(), f"{value}0", value[:-1]]
    return [{**headers, name: v} for v in bad if v != value]


@pytest.mark.parametrize("kind", ["github", "gitea", "gitlab"])
def test_forge_webhooks_refuse_respellings_and_a_body_under_a_new_delivery_id(
    tmp_path: Path, db: str, kind: str
) -> None:
    with _start(tmp_path, db, kind) as loom:
        head = loom.remote.head()
        payload = {"ref": "refs/heads/main", "before": "0" * 40, "after": head,
                   "repository": {"full_name": REPO}, "sender": {"login": "eng"},
                   "project": {"path_with_namespace": REPO}, "user_username": "eng"}  # fmt: skip
        body = json.dumps(payload).encode()
        url = f"/api/v1/git/webhooks/{kind}"
        with loom.client() as client:
            headers = _forge_headers(kind, body, "delivery-1")
            for mutated in _signature_respellings(kind, headers):
                answer = client.post(url, content=body, headers=mutated)
                assert answer.status_code == 401, (mutated, answer.text)
                assert answer.json()["code"] == "webhook_rejected"
            credential = _credential(kind)
            pairs = [*headers.items(), (credential, headers[credential])]
            twice = client.post(url, content=body, headers=pairs)
            assert twice.status_code == 401, twice.text
            assert "more than once" in twice.json()["detail"]
            first = client.post(url, content=body, headers=headers)
            assert first.status_code == 202, first.text
            assert first.json()["handling"] == "queued", first.json()
            for delivery in ("delivery-1", "delivery-2"):
                again = client.post(url, content=body, headers=_forge_headers(kind, body, delivery))
                assert again.status_code == 401, (delivery, again.text)
                assert again.json()["code"] == "webhook_replayed"


# ---- the verifier the Python SDK and notification receivers use ----------------------------


@pytest.mark.parametrize("name", sorted(respellings("v1=" + "0" * 64)))
def test_signing_verify_refuses_each_respelling(name: str) -> None:
    """What a backend (``linkloom.sdk``) or a notification receiver runs on each request."""
    body = b'{"kind": "run_failed"}'
    headers = signing.sign("receiver-key", body)
    signing.verify("receiver-key", body, headers)
    mutated = {
        **headers,
        signing.SIGNATURE_HEADER: respellings(headers[signing.SIGNATURE_HEADER])[name],
    }
    with pytest.raises(signing.SignatureError):
        signing.verify("receiver-key", body, mutated)


def test_signing_check_keys_replays_on_what_was_verified() -> None:
    body = b"{}"
    headers = signing.sign("k", body, timestamp=1_700_000_000)
    spaced = {**headers, signing.SIGNATURE_HEADER: f"  {headers[signing.SIGNATURE_HEADER]} "}
    a = signing.check("k", body, headers, now=1_700_000_000)
    b = signing.check("k", body, spaced, now=1_700_000_000)
    assert a.replay_key == b.replay_key
    later = signing.sign("k", body, timestamp=1_700_000_001)
    assert signing.check("k", body, later, now=1_700_000_000).replay_key != a.replay_key
