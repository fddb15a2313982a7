"""The flows repo as a mirror of a real remote: smart HTTP with a token, SSH with a deploy key,
and file://. Credentials never show up in the repo's config or in errors."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from linkloom.flows import gitstore
from linkloom.flows.remote import (
    FlowsRemote,
    RemoteConfig,
    RemoteCredentialsRefused,
    RemoteMoved,
    RemoteUnavailable,
)
from tests.support.git_remotes import (
    HTTP_BACKEND,
    BareRemote,
    Engineer,
    SmartHttpServer,
    SshServer,
)
from tests.support.real import require
from tests.support.servers import free_port

TOKEN = "ghp_s3cret-token-value"
NO_SSHD = "openssh-server is not installed (scripts/provision-git installs it)"
SPEC = "id: report\nsteps:\n  - id: a\n    type: transform\n    template: {x: 1}\n"


@pytest.fixture
def remote(tmp_path: Path) -> BareRemote:
    return BareRemote.create(tmp_path / "srv" / "flows.git", seed={"flows/report/flow.yaml": SPEC})


def mirror(tmp_path: Path, url: str, **options: object) -> FlowsRemote:
    repo = gitstore.FlowsRepo(tmp_path / "server" / "flows")
    return FlowsRemote(repo, RemoteConfig.parse(url, **options))


def test_https_remote_with_a_token_is_mirrored_and_the_token_stays_out_of_the_repo(
    tmp_path: Path, remote: BareRemote
) -> None:
    require(HTTP_BACKEND.exists(), "git http-backend is not installed")
    with SmartHttpServer(tmp_path / "srv", username="x-access-token", token=TOKEN) as http:
        flows = mirror(tmp_path, http.url_for(remote), token=TOKEN)
        head = flows.ensure()
        assert head == remote.head()
        assert flows.repo.read_main()["report"].text == SPEC
        assert all(r["authorized"] for r in http.requests)

        engineer = Engineer.clone(
            http.url_for(remote).replace("http://", f"http://x-access-token:{TOKEN}@"),
            tmp_path / "engineer",
        )
        engineer.write("flows/report/flow.yaml", SPEC.replace("x: 1", "x: 2"))
        engineer.commit("Change x")
        pushed = engineer.push("main")
        assert flows.fetch() == pushed
        assert flows.repo.head() == head  # fetching never moves production by itself

    config = (flows.repo.path / ".git" / "config").read_text()
    assert TOKEN not in config
    assert "x-access-token" not in config


def test_https_remote_refusing_the_token_fails_clearly_without_showing_it(
    tmp_path: Path, remote: BareRemote
) -> None:
    require(HTTP_BACKEND.exists(), "git http-backend is not installed")
    with SmartHttpServer(tmp_path / "srv", username="x-access-token", token=TOKEN) as http:
        flows = mirror(tmp_path, http.url_for(remote), token="wrong-token-value")
        with pytest.raises(RemoteCredentialsRefused) as refused:
            flows.ensure()
    message = str(refused.value)
    assert "refused the credentials" in message
    assert http.url_for(remote) in message
    assert "wrong-token-value" not in message


def test_credentials_written_into_the_url_move_into_the_token(tmp_path: Path) -> None:
    config = RemoteConfig.parse(f"https://bot:{TOKEN}@git.example.org/team/flows.git")
    assert config.url == "https://git.example.org/team/flows.git"
    assert (config.username, config.token) == ("bot", TOKEN)
    assert config.path == "team/flows"
    flows = FlowsRemote(gitstore.FlowsRepo(tmp_path / "r"), config)
    assert flows.redact(f"fatal: {TOKEN} at https://u:p@h/x") == "fatal: *** at https://***@h/x"


def test_scp_style_and_ssh_urls_name_their_repository_path() -> None:
    assert RemoteConfig.parse("git@github.com:acme/flows.git").path == "acme/flows"
    assert RemoteConfig.parse("git@github.com:acme/flows.git").kind == "ssh"
    assert RemoteConfig.parse("ssh://git@host:2222/group/sub/flows").path == "group/sub/flows"
    with pytest.raises(Exception, match="not a git URL"):
        RemoteConfig.parse("ftp://host/x")


def test_ssh_remote_with_a_deploy_key_fetches_and_pushes(
    tmp_path: Path, remote: BareRemote
) -> None:
    require(SshServer.available(), NO_SSHD)
    with SshServer(tmp_path / "ssh") as ssh:
        flows = mirror(
            tmp_path, ssh.url_for(remote), ssh_key=str(ssh.client_key),
            known_hosts=str(ssh.known_hosts),
        )  # fmt: skip
        head = flows.ensure()
        assert head == remote.head()
        new = flows.repo.commit_files(
            gitstore.MAIN, {"flows/report/flow.yaml": SPEC + "# note\n"}, "Note"
        )
        flows.push(new, expected=head)
        assert remote.head() == new


def test_ssh_remote_without_the_key_is_refused(tmp_path: Path, remote: BareRemote) -> None:
    require(SshServer.available(), NO_SSHD)
    with SshServer(tmp_path / "ssh") as ssh:
        other = tmp_path / "other_key"
        keygen = ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)]
        subprocess.run(keygen, check=True)
        flows = mirror(
            tmp_path, ssh.url_for(remote), ssh_key=str(other), known_hosts=str(ssh.known_hosts)
        )
        with pytest.raises(RemoteCredentialsRefused, match="refused the credentials"):
            flows.ensure()


def test_push_after_someone_else_pushed_is_refused_never_forced(
    tmp_path: Path, remote: BareRemote
) -> None:
    flows = mirror(tmp_path, remote.file_url)
    head = flows.ensure()
    engineer = Engineer.clone(remote.file_url, tmp_path / "engineer")
    engineer.write("README.md", "theirs\n")
    engineer.commit("Their change")
    theirs = engineer.push("main")
    ours = flows.repo.commit_files(gitstore.MAIN, {"README.md": "ours\n"}, "Our change")
    with pytest.raises(RemoteMoved):
        flows.push(ours, expected=head)  # the remote moved since our last fetch
    flows.fetch()
    with pytest.raises(RemoteMoved):
        flows.push(ours, expected=theirs)  # even knowing where it is: not a fast-forward
    assert remote.head() == theirs


def test_an_empty_remote_is_seeded_and_pushed(tmp_path: Path) -> None:
    empty = BareRemote.create(tmp_path / "srv" / "empty.git")
    seed = tmp_path / "seed" / "report"
    seed.mkdir(parents=True)
    (seed / "flow.yaml").write_text(SPEC)
    flows = mirror(tmp_path, empty.file_url)
    head = flows.ensure(seed_from=str(tmp_path / "seed"))
    assert empty.head() == head
    assert empty.file_at("main", "flows/report/flow.yaml") == SPEC.strip()


def test_an_unreachable_remote_is_a_clear_unavailable_error(tmp_path: Path) -> None:
    flows = mirror(tmp_path, f"http://127.0.0.1:{free_port()}/flows.git", timeout=10)
    with pytest.raises(RemoteUnavailable) as down:
        flows.ensure()
    assert "Could not fetch the flows remote" in str(down.value)
    assert down.value.http_status == 503


def test_a_pull_request_head_comes_from_the_pull_ref_or_else_its_branch(
    tmp_path: Path, remote: BareRemote
) -> None:
    flows = mirror(tmp_path, remote.file_url)
    flows.ensure()
    engineer = Engineer.clone(remote.file_url, tmp_path / "engineer")
    engineer.branch("feature/x")
    engineer.write("flows/report/flow.yaml", SPEC.replace("x: 1", "x: 3"))
    sha = engineer.commit("x is 3")
    engineer.push("feature/x")
    assert flows.fetch_pull(refs=("refs/pull/7/head", "refs/heads/feature/x"), sha=sha, number=7)
    remote.set_pull_ref(8, sha)
    assert flows.fetch_pull(refs=("refs/pull/8/head",), sha=sha, number=8) == sha
    with pytest.raises(RemoteUnavailable, match="pull request 9"):
        flows.fetch_pull(refs=("refs/pull/9/head",), sha="0" * 40, number=9)
