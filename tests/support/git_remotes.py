"""Real git remotes on loopback for the GitOps tests: a bare repository served over git's smart
HTTP (``git http-backend`` behind a small threaded HTTP server that checks a token with Basic
auth, like GitHub, GitLab and Gitea do), over SSH (Debian's ``sshd`` on a free port with a
generated host key and one authorised deploy key), and as ``file://``.

    remote = BareRemote.create(tmp_path / "remote.git", seed={"flows/x/flow.yaml": "..."})
    with SmartHttpServer(tmp_path, username="x-access-token", token="s3cret") as http:
        url = http.url_for(remote)             # http://127.0.0.1:<port>/remote.git
    with SshServer(tmp_path / "ssh") as ssh:
        url = ssh.url_for(remote)              # ssh://root@127.0.0.1:<port>/…/remote.git
        ssh.client_key                         # the deploy key's private half

``Engineer`` works in a clone the way a person does: edit, commit, push with the ``git`` CLI.
"""

from __future__ import annotations

import base64
import getpass
import hmac
import os
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.support.servers import free_port

HTTP_BACKEND = Path("/usr/lib/git-core/git-http-backend")
SSHD = Path("/usr/sbin/sshd")
GIT_ENV = {
    "GIT_AUTHOR_NAME": "Test Engineer",
    "GIT_AUTHOR_EMAIL": "engineer@example.org",
    "GIT_COMMITTER_NAME": "Test Engineer",
    "GIT_COMMITTER_EMAIL": "engineer@example.org",
}


def git(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    """Run git; raise with its output when it fails."""
    done = subprocess.run(
        ["git", *args],
        cwd=cwd,
        env={**os.environ, **GIT_ENV, "GIT_TERMINAL_PROMPT": "0", **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed: {done.stderr or done.stdout}")
    return done.stdout.strip()


@dataclass
class BareRemote:
    """A bare repository: the team's flows repo on its git host."""

    path: Path
    branch: str = "main"

    @classmethod
    def create(
        cls, path: Path, *, seed: dict[str, str] | None = None, branch: str = "main"
    ) -> BareRemote:
        git("init", "-q", "--bare", "-b", branch, str(path))
        git("config", "http.receivepack", "true", cwd=path)
        remote = cls(path=path, branch=branch)
        if seed:
            work = path.parent / f"{path.name}-seed"
            git("clone", "-q", str(path), str(work))
            for name, text in seed.items():
                target = work / name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(text)
            git("add", "-A", cwd=work)
            git("commit", "-q", "-m", "Add flows", cwd=work)
            git("push", "-q", "origin", f"HEAD:refs/heads/{branch}", cwd=work)
            shutil.rmtree(work)
        return remote

    @property
    def file_url(self) -> str:
        return self.path.resolve().as_uri()

    def head(self, ref: str | None = None) -> str:
        return git("rev-parse", ref or f"refs/heads/{self.branch}", cwd=self.path)

    def file_at(self, ref: str, path: str) -> str:
        return git("show", f"{ref}:{path}", cwd=self.path)

    def log(self, ref: str | None = None) -> list[str]:
        out = git("log", "--format=%H %s", ref or self.branch, cwd=self.path)
        return out.splitlines()

    def set_pull_ref(self, number: int, sha: str, *, prefix: str = "refs/pull") -> None:
        """What a forge does when a pull request opens or moves: ``refs/pull/<n>/head``."""
        git("update-ref", f"{prefix}/{number}/head", sha, cwd=self.path)

    def merge(
        self, branch: str, *, message: str, author: str = "Merger <merger@example.org>"
    ) -> str:
        """Merge ``branch`` into the production branch with a merge commit, as a forge's merge
        button does (``git merge --no-ff`` in a scratch clone, then a push)."""
        work = self.path.parent / f"{self.path.name}-merge-{time.monotonic_ns()}"
        git("clone", "-q", "-b", self.branch, str(self.path), str(work))
        name, email = author.split(" <")
        env = {"GIT_AUTHOR_NAME": name, "GIT_AUTHOR_EMAIL": email.rstrip(">")}
        git("merge", "-q", "--no-ff", "-m", message, f"origin/{branch}", cwd=work, env=env)
        git("push", "-q", "origin", f"HEAD:refs/heads/{self.branch}", cwd=work)
        sha = git("rev-parse", "HEAD", cwd=work)
        shutil.rmtree(work)
        return sha


@dataclass
class Engineer:
    """A clone of the remote, changed and pushed with the git CLI."""

    work: Path
    url: str
    env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def clone(cls, url: str, work: Path, *, env: dict[str, str] | None = None) -> Engineer:
        git("clone", "-q", url, str(work), env=env)
        return cls(work=work, url=url, env=env or {})

    def branch(self, name: str, *, start: str = "origin/main") -> None:
        git("fetch", "-q", "origin", cwd=self.work, env=self.env)
        git("checkout", "-q", "-B", name, start, cwd=self.work)

    def write(self, path: str, text: str) -> None:
        target = self.work / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)

    def commit(self, message: str) -> str:
        git("add", "-A", cwd=self.work)
        git("commit", "-q", "-m", message, cwd=self.work)
        return git("rev-parse", "HEAD", cwd=self.work)

    def push(self, branch: str, *, force: bool = False) -> str:
        forced = ["--force"] if force else []
        target = f"HEAD:refs/heads/{branch}"
        git("push", "-q", *forced, "origin", target, cwd=self.work, env=self.env)
        return git("rev-parse", "HEAD", cwd=self.work)


class SmartHttpServer:
    """``git http-backend`` (CGI) behind a threaded HTTP server; Basic auth with one token."""

    def __init__(self, root: Path, *, username: str = "", token: str = "") -> None:
        self.root = root
        self.username = username
        self.token = token
        self.port = free_port()
        self.requests: list[dict[str, Any]] = []  # {method, path, authorized, header}
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.down = False  # answer 503 to everything (an outage)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url_for(self, remote: BareRemote) -> str:
        return f"{self.base}/{remote.path.relative_to(self.root)}"

    def __enter__(self) -> SmartHttpServer:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                outer._handle(self)

            def do_POST(self) -> None:
                outer._handle(self)

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def _authorized(self, header: str) -> bool:
        if not self.token:
            return True
        expected = base64.b64encode(f"{self.username}:{self.token}".encode()).decode()
        return hmac.compare_digest(header.encode(), f"Basic {expected}".encode())

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        header = handler.headers.get("Authorization", "")
        path, _, query = handler.path.partition("?")
        authorized = self._authorized(header)
        self.requests.append(
            {"method": handler.command, "path": handler.path, "authorized": authorized,
             "header": header}
        )  # fmt: skip
        if self.down:
            handler.send_response(503)
            handler.end_headers()
            return
        if not authorized:
            handler.send_response(401)
            handler.send_header("WWW-Authenticate", 'Basic realm="git"')
            handler.end_headers()
            return
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_PROJECT_ROOT": str(self.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "REQUEST_METHOD": handler.command,
            "CONTENT_TYPE": handler.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_USER": self.username or "anonymous",
            "REMOTE_ADDR": "127.0.0.1",
            "GIT_HTTP_MAX_REQUEST_BUFFER": "100M",
        }
        for name, value in handler.headers.items():
            key = "HTTP_" + name.upper().replace("-", "_")
            if key not in ("HTTP_AUTHORIZATION", "HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH"):
                env[key] = value
        done = subprocess.run(
            [str(HTTP_BACKEND)], input=body, env=env, capture_output=True, timeout=60, check=False
        )
        head, _, payload = done.stdout.partition(b"\r\n\r\n")
        status = 200
        headers: list[tuple[str, str]] = []
        for line in head.decode("latin-1").split("\r\n"):
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.strip().split()[0])
            elif name:
                headers.append((name, value.strip()))
        handler.send_response(status)
        for name, value in headers:
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)


class SshServer:
    """Debian's ``sshd`` on 127.0.0.1:<free port> with a generated host key and one deploy key."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.port = free_port()
        self.user = getpass.getuser()
        self.client_key = directory / "deploy_key"
        self.known_hosts = directory / "known_hosts"
        self._process: subprocess.Popen[bytes] | None = None

    @staticmethod
    def available() -> bool:
        return SSHD.exists() and shutil.which("ssh-keygen") is not None

    def url_for(self, remote: BareRemote) -> str:
        return f"ssh://{self.user}@127.0.0.1:{self.port}{remote.path.resolve()}"

    def __enter__(self) -> SshServer:
        self.dir.mkdir(parents=True, exist_ok=True)
        host_key = self.dir / "host_ed25519"
        for key in (host_key, self.client_key):
            subprocess.run(
                ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True
            )
        authorized = self.dir / "authorized_keys"
        authorized.write_text(Path(f"{self.client_key}.pub").read_text())
        authorized.chmod(0o600)
        host_pub = Path(f"{host_key}.pub").read_text().split()
        self.known_hosts.write_text(f"[127.0.0.1]:{self.port} {host_pub[0]} {host_pub[1]}\n")
        config = self.dir / "sshd_config"
        config.write_text(
            "\n".join(
                [
                    f"Port {self.port}",
                    "ListenAddress 127.0.0.1",
                    f"HostKey {host_key}",
                    f"AuthorizedKeysFile {authorized}",
                    f"PidFile {self.dir / 'sshd.pid'}",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "PubkeyAuthentication yes",
                    "PermitRootLogin prohibit-password",
                    "UsePAM no",
                    "StrictModes no",
                    "LogLevel ERROR",
                ]
            )
            + "\n"
        )
        Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege-separation directory
        self._process = subprocess.Popen(
            [str(SSHD), "-D", "-e", "-f", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=(self.dir / "sshd.log").open("wb"),
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"sshd exited: {(self.dir / 'sshd.log').read_text()}")
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            time.sleep(0.05)
        raise RuntimeError("sshd did not start")

    def __exit__(self, *exc: object) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=5)

    def git_env(self) -> dict[str, str]:
        """The environment an engineer's git uses to reach this server."""
        return {
            "GIT_SSH_COMMAND": f"ssh -i {self.client_key} -o IdentitiesOnly=yes "
            f"-o UserKnownHostsFile={self.known_hosts} -o StrictHostKeyChecking=yes"
        }
