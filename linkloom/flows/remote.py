"""The flows repo as a mirror of the team's git remote (``LOOM_FLOWS__REMOTE``).

The server's repo keeps its own ``main``: production, what Link Loom has imported. The remote's
production branch (``flows.branch``) is fetched to ``refs/remotes/origin/<branch>``:

    ensure()         create or adopt the local repo as a mirror (clone when missing; seed and push
                     an empty remote)
    fetch()          every remote branch to refs/remotes/origin/* (at start, on a push webhook,
                     by polling); returns the remote production head
    fetch_pull()     a pull request's head (the forge's pull ref, else its branch) into
                     ``refs/loom/pull/<number>``
    drop_pull()      delete that ref once no live proposal needs it (``pulls()`` lists them), so
                     git can drop the head's objects
    push(new)        publish main's new head to the remote branch, never forced; ``RemoteMoved``
                     when the remote moved meanwhile

Credentials never reach a command line, the repo's config, a log or an error: an https token
travels as an ``http.extraHeader`` in the git process's environment (``GIT_CONFIG_*``), an ssh
deploy key through ``GIT_SSH_COMMAND``, and every message from git passes through ``redact``.
Synchronous (it runs git); async callers use ``asyncio.to_thread``.
"""

from __future__ import annotations

import base64
import re
import shlex
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from linkloom.errors import Conflict, InvalidInput, Unavailable
from linkloom.flows import gitstore

REMOTE = "origin"
PULL_REFS = "refs/loom/pull/"  # pull request heads, by number
_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]+@")
_SCP = re.compile(r"^(?P<user>[^@/\s]+@)?(?P<host>[^:/\s]+):(?P<path>(?!//).+)$")
_AUTH_HINTS = (
    "authentication failed",
    "could not read username",
    "could not read password",
    "permission denied",
    "access denied",
    "http basic: access denied",
    "returned error: 401",
    "returned error: 403",
    "invalid username or password",
    "host key verification failed",
)
_REJECTED_HINTS = ("[rejected]", "non-fast-forward", "fetch first", "(stale info)")


class RemoteUnavailable(Unavailable):
    """Could not {action} the flows remote {remote}: {reason}. Production stays as it was; check
    flows.remote, its credentials and the network."""

    code = "flows_remote_unavailable"


class RemoteCredentialsRefused(RemoteUnavailable):
    """The flows remote {remote} refused the credentials ({action}): {reason}. Check
    flows.remote_token (https) or flows.ssh_key (ssh) and the key's access to the repository."""

    code = "flows_remote_credentials_refused"


class RemoteMoved(Conflict):
    """The flows remote's {branch} moved while Link Loom was pushing to it; nothing was changed.
    Link Loom fetches it and tries again when the change is clean."""

    code = "flows_remote_moved"


class RemotePushRefused(Conflict):
    """The flows remote {remote} refused the push to {branch}: {reason}. Let Link Loom's
    credentials push to it (branch protection) or promote by merging the pull request."""

    code = "flows_remote_push_refused"


@dataclass(frozen=True, slots=True, kw_only=True)
class RemoteConfig:
    """Where the remote is and how to reach it. ``token`` and the key path are secrets' homes."""

    url: str
    branch: str = "main"
    username: str = "x-access-token"
    token: str = ""
    ssh_key: str = ""
    known_hosts: str = ""
    timeout: float = 60.0

    @classmethod
    def parse(cls, url: str, **options: object) -> RemoteConfig:
        """A config from a URL; credentials written into an https URL move into ``token``."""
        url = url.strip()
        if not url:
            raise InvalidInput("flows.remote is empty: give the git URL of the flows repo")
        parts = urlsplit(url)
        token = str(options.pop("token", "") or "")
        username = str(options.pop("username", "") or "x-access-token")
        if parts.scheme in ("http", "https") and (parts.username or parts.password):
            if parts.password and not token:
                token = parts.password
                username = parts.username or username
            elif parts.username and not token:
                token = parts.username  # https://TOKEN@host/… is GitHub's short form
            host = parts.hostname or ""
            netloc = host + (f":{parts.port}" if parts.port else "")
            url = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
        elif parts.scheme not in ("http", "https", "ssh", "git", "file") and not _SCP.match(url):
            raise InvalidInput(
                f"flows.remote {url!r} is not a git URL: use https://host/owner/repo.git, "
                "ssh://git@host/owner/repo.git, git@host:owner/repo.git or file:///path"
            )
        return cls(url=url, token=token, username=username, **options)  # type: ignore[arg-type]

    @property
    def kind(self) -> str:
        """``https`` | ``http`` | ``ssh`` | ``file`` | ``git``."""
        scheme = urlsplit(self.url).scheme
        return scheme or ("ssh" if _SCP.match(self.url) else "file")

    @property
    def path(self) -> str:
        """The repository path on the host, without ``.git``: ``owner/name``."""
        parts = urlsplit(self.url)
        path = parts.path if parts.scheme else (_SCP.match(self.url) or {"path": ""})["path"]
        path = path.strip("/")
        return path[:-4] if path.endswith(".git") else path


class FlowsRemote:
    """A ``FlowsRepo`` kept as a mirror of one remote. Thread-safe through the repo's lock."""

    def __init__(self, repo: gitstore.FlowsRepo, config: RemoteConfig) -> None:
        self.repo = repo
        self.config = config
        self._lock: threading.RLock = repo._lock  # one writer lock for the repo and its remote
        self._secrets = tuple(s for s in self._secret_values() if s)

    # ---------------------------------------------------------------- identity

    @property
    def display_url(self) -> str:
        """The URL as shown anywhere: no credentials."""
        return redact_url(self.config.url)

    @property
    def tracking_ref(self) -> str:
        return f"refs/remotes/{REMOTE}/{self.config.branch}"

    def redact(self, text: str) -> str:
        """``text`` without the token, the basic-auth header or userinfo in URLs."""
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return redact_url(text)

    # ---------------------------------------------------------------- setup

    def ensure(self, *, seed_from: str | None = None) -> str:
        """Make the local repo a mirror of the remote; returns production's head (local main).

        A missing local repo is created from the remote's branch; when the remote has no such
        branch yet, a new repo (seeded from ``seed_from``) is created and pushed to it.
        """
        with self._lock:
            path = self.repo.path
            if not self.repo.exists():
                path.mkdir(parents=True, exist_ok=True)
                self._git("init", "-q", "-b", gitstore.MAIN, action="create")
                self._git("config", "user.name", "Link Loom", action="configure")
                self._git("config", "user.email", "loom@localhost", action="configure")
            remotes = self._git("remote", action="configure").split()
            verb = "set-url" if REMOTE in remotes else "add"
            self._git("remote", verb, REMOTE, self.config.url, action="configure")
            remote_head = self.fetch()
            local = self._local_main()
            if local is None and remote_head is not None:
                self._git("update-ref", f"refs/heads/{gitstore.MAIN}", remote_head, action="adopt")
                self._git("reset", "-q", "--hard", remote_head, action="adopt")
                self.repo._repo = None
                return remote_head
            if local is None:
                self._drop_git_dir_if_empty()
                local = self.repo.init(seed_from=seed_from)
                self._git("remote", "add", REMOTE, self.config.url, action="configure")
            if remote_head is None:
                self.push(local, expected=None)
            return local

    def _drop_git_dir_if_empty(self) -> None:
        import shutil

        shutil.rmtree(self.repo.path / ".git")
        self.repo._repo = None

    def _local_main(self) -> str | None:
        out = self._git(
            "rev-parse", "--verify", "--quiet", f"refs/heads/{gitstore.MAIN}", check=False
        )
        return out.strip() or None

    # ---------------------------------------------------------------- fetch

    def fetch(self) -> str | None:
        """Fetch every branch of the remote; the remote production head (None: no such branch)."""
        with self._lock:
            self._git(
                "fetch", "--prune", "--no-tags", REMOTE,
                f"+refs/heads/*:refs/remotes/{REMOTE}/*",
                action="fetch", network=True,
            )  # fmt: skip
            return self.remote_head()

    def remote_head(self) -> str | None:
        out = self._git("rev-parse", "--verify", "--quiet", self.tracking_ref, check=False)
        return out.strip() or None

    def fetch_pull(self, *, refs: tuple[str, ...], sha: str, number: int) -> str:
        """Fetch a pull request's head into ``refs/loom/pull/<number>``; returns ``sha``.

        ``refs`` are tried in order (the forge's pull ref, then the source branch); the first
        that brings ``sha`` wins.
        """
        target = f"{PULL_REFS}{number}"
        reasons: list[str] = []
        with self._lock:
            for ref in refs:
                try:
                    self._git(
                        "fetch", "--no-tags", REMOTE, f"+{ref}:{target}",
                        action="fetch", network=True,
                    )  # fmt: skip
                except RemoteCredentialsRefused:
                    raise
                except RemoteUnavailable as exc:
                    reasons.append(str(exc.fields.get("reason", exc)))
                    continue
                if self.has_commit(sha):
                    return sha
            if self.has_commit(sha):
                return sha
            self._drop(target)  # whatever was fetched is not the head asked for
        raise RemoteUnavailable(
            action=f"fetch commit {sha[:12]} of pull request {number}",
            remote=self.display_url,
            reason="; ".join(reasons) or "the commit is not on the remote (yet)",
        )

    def drop_pull(self, number: int, *, expected: str | None = None) -> bool:
        """Delete ``refs/loom/pull/<number>`` (only while it is at ``expected``, when given);
        True when it was deleted. The head's objects stay until git's garbage collection finds
        that nothing reaches them (a live proposal's branch still does)."""
        with self._lock:
            return self._drop(f"{PULL_REFS}{number}", expected=expected)

    def pulls(self) -> dict[int, str]:
        """``{number: head}`` of the pull requests whose heads are fetched."""
        out = self._git("for-each-ref", "--format=%(refname) %(objectname)", PULL_REFS)
        heads: dict[int, str] = {}
        for line in out.splitlines():
            ref, _, sha = line.partition(" ")
            name = ref.removeprefix(PULL_REFS)
            if name.isdigit():
                heads[int(name)] = sha
        return heads

    def _drop(self, ref: str, *, expected: str | None = None) -> bool:
        current = self._git("rev-parse", "--verify", "--quiet", ref, check=False).strip()
        if not current or (expected is not None and current != expected):
            return False
        self._git("update-ref", "-d", ref, current, action="delete a fetched pull request head")
        return True

    def has_commit(self, sha: str) -> bool:
        out = self._git("cat-file", "-t", sha, check=False)
        return out.strip() == "commit"

    # ---------------------------------------------------------------- push

    def push(self, new: str, *, expected: str | None) -> None:
        """Publish ``new`` as the remote's production branch: a plain push, never forced.

        Raises:
            RemoteMoved: the remote branch is no longer at ``expected`` (someone pushed).
            RemotePushRefused: a hook or branch protection refused it.
        """
        with self._lock:
            current = self.remote_head()
            if expected is not None and current is not None and current != expected:
                raise RemoteMoved(branch=self.config.branch)
            try:
                self._git(
                    "push", "--porcelain", REMOTE, f"{new}:refs/heads/{self.config.branch}",
                    action="push to", network=True,
                )  # fmt: skip
            except RemoteUnavailable as exc:
                reason = str(exc.fields.get("reason", ""))
                lowered = reason.lower()
                if isinstance(exc, RemoteCredentialsRefused):
                    raise
                if any(hint in lowered for hint in _REJECTED_HINTS):
                    raise RemoteMoved(branch=self.config.branch) from None
                if "remote rejected" in lowered or "protected" in lowered:
                    raise RemotePushRefused(
                        remote=self.display_url, branch=self.config.branch, reason=reason
                    ) from None
                raise
            # Record the push as fetched: the remote branch is now where we put it.
            self._git("update-ref", self.tracking_ref, new, action="record the push")

    # ---------------------------------------------------------------- git

    def _git(
        self, *args: str, action: str = "read", network: bool = False, check: bool = True
    ) -> str:
        env = {**_base_env(), **(self._auth_env() if network else {})}
        command = ["git", "-C", str(self.repo.path), *args]
        try:
            done = subprocess.run(
                command,
                env=env,
                capture_output=True,
                text=True,
                timeout=self.config.timeout if network else 60,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise RemoteUnavailable(
                action=action,
                remote=self.display_url,
                reason=f"no answer within {self.config.timeout:g}s (flows.git_timeout)",
            ) from None
        except OSError as exc:
            raise RemoteUnavailable(
                action=action, remote=self.display_url, reason=f"git could not run: {exc}"
            ) from None
        if done.returncode != 0 and check:
            reason = self.redact(_last_lines(f"{done.stderr}\n{done.stdout}"))
            error = (
                RemoteCredentialsRefused
                if network and any(h in reason.lower() for h in _AUTH_HINTS)
                else RemoteUnavailable
            )
            raise error(action=action, remote=self.display_url, reason=reason or "git failed")
        return done.stdout

    def _secret_values(self) -> list[str]:
        token = self.config.token
        if not token:
            return []
        basic = base64.b64encode(f"{self.config.username}:{token}".encode()).decode()
        return [token, basic]

    def _auth_env(self) -> dict[str, str]:
        config = self.config
        pairs: list[tuple[str, str]] = [("credential.helper", "")]
        env: dict[str, str] = {}
        if config.token and config.kind in ("https", "http"):
            basic = base64.b64encode(f"{config.username}:{config.token}".encode()).decode()
            pairs.append(("http.extraHeader", f"Authorization: Basic {basic}"))
        if config.kind == "ssh":
            env["GIT_SSH_COMMAND"] = self._ssh_command()
        env["GIT_CONFIG_COUNT"] = str(len(pairs))
        for n, (key, value) in enumerate(pairs):
            env[f"GIT_CONFIG_KEY_{n}"] = key
            env[f"GIT_CONFIG_VALUE_{n}"] = value
        return env

    def _ssh_command(self) -> str:
        config = self.config
        known = config.known_hosts or str(self.repo.path / ".git" / "loom_known_hosts")
        parts = [
            "ssh",
            "-o", "BatchMode=yes",
            "-o", f"ConnectTimeout={max(1, int(config.timeout))}",
            "-o", f"UserKnownHostsFile={known}",
            "-o", "StrictHostKeyChecking=" + ("yes" if config.known_hosts else "accept-new"),
        ]  # fmt: skip
        if config.ssh_key:
            parts += ["-i", str(Path(config.ssh_key).expanduser()), "-o", "IdentitiesOnly=yes"]
        return shlex.join(parts)


def redact_url(text: str) -> str:
    """Remove ``user:password@`` from every URL in ``text``."""
    return _USERINFO.sub(lambda m: m["scheme"] + "***@", text)


def _base_env() -> dict[str, str]:
    import os

    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SSH_AUTH_SOCK")
    env = {k: v for k, v in os.environ.items() if k in keep}
    env.update(
        {
            "GIT_TERMINAL_PROMPT": "0",  # fail, never wait for a password
            "GIT_ASKPASS": "true",
            "SSH_ASKPASS": "true",
            "LC_ALL": "C",  # git's messages in English, for the hints above
        }
    )
    return env


def _last_lines(text: str, count: int = 4) -> str:
    lines = [
        line.strip()
        for line in text.strip().splitlines()
        if line.strip() and not line.startswith(("hint:", "To ", "Done"))
    ]
    return " / ".join(lines[-count:])[:600]
