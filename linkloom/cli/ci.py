"""``loom proposal ci``: run inside any CI job on a pull request's checked-out head.

It finds the pull request (GitHub Actions, Gitea Actions and GitLab CI are read from their
environment; anything else passes ``--forge/--repo/--number``), sends the flow files the branch
changes since its base to the server as a revision of the proposal keyed by the pull request,
waits for the checks, prints annotations for invalid specs (``::error file=…,line=…`` on GitHub
and Gitea, ``file:line:col: error: …`` elsewhere) and the Markdown summary (also appended to
``$GITHUB_STEP_SUMMARY`` when set), and exits like ``loom proposal checks --wait`` (its
``verdict``): 0 passed, 1 failed, 8 results differ from production (a reviewer must look), 6 a
check could not run, 124 still running at ``--timeout``; 2–6 for errors.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from linkloom.cli.apps import proposal_app
from linkloom.cli.connection import Connection, transport_override
from linkloom.cli.proposals import verdict
from linkloom.cli.settings import cli_config
from linkloom.errors import InvalidInput


@dataclass(frozen=True, slots=True, kw_only=True)
class PullContext:
    forge: str
    repo: str
    number: int
    head: str
    base: str
    head_ref: str = ""
    title: str = ""
    url: str = ""
    annotations: str = "plain"  # github | plain


def detect(env: Mapping[str, str]) -> dict[str, Any]:
    """What the CI system says about the pull request being built ({} outside a known CI)."""
    if env.get("GITHUB_ACTIONS") == "true" or env.get("GITEA_ACTIONS") == "true":
        event: dict[str, Any] = {}
        path = env.get("GITHUB_EVENT_PATH")
        if path and Path(path).is_file():
            event = json.loads(Path(path).read_text())
        pr = event.get("pull_request") or {}
        server = env.get("GITHUB_SERVER_URL", "")
        return {
            "forge": "gitea" if env.get("GITEA_ACTIONS") == "true" else "github",
            "repo": env.get("GITHUB_REPOSITORY", ""),
            "number": pr.get("number") or event.get("number"),
            "head": (pr.get("head") or {}).get("sha") or env.get("GITHUB_SHA", ""),
            "base": env.get("GITHUB_BASE_REF") or (pr.get("base") or {}).get("ref") or "",
            "head_ref": env.get("GITHUB_HEAD_REF", ""),
            "title": pr.get("title", ""),
            "url": pr.get("html_url")
            or (f"{server}/{env.get('GITHUB_REPOSITORY')}/pull/{pr.get('number')}" if pr else ""),
            "annotations": "github",
        }
    if env.get("GITLAB_CI") == "true":
        iid = env.get("CI_MERGE_REQUEST_IID", "")
        return {
            "forge": "gitlab",
            "repo": env.get("CI_PROJECT_PATH", ""),
            "number": int(iid) if iid.isdigit() else None,
            "head": env.get("CI_COMMIT_SHA", ""),
            "base": env.get("CI_MERGE_REQUEST_TARGET_BRANCH_NAME", ""),
            "head_ref": env.get("CI_MERGE_REQUEST_SOURCE_BRANCH_NAME", ""),
            "title": env.get("CI_MERGE_REQUEST_TITLE", ""),
            "url": f"{env.get('CI_PROJECT_URL', '')}/-/merge_requests/{iid}" if iid else "",
        }
    return {}


def changed_flow_files(base: str, *, cwd: Path) -> dict[str, str | None]:
    """``{flows/… path: text or None (deleted)}`` the checked-out HEAD changes since it left
    ``base`` (``origin/<base>`` when that exists)."""
    ref = base
    for candidate in (f"origin/{base}", base):
        if _git(cwd, "rev-parse", "--verify", "--quiet", candidate, check=False):
            ref = candidate
            break
    else:
        raise InvalidInput(
            f"the base branch {base!r} is not in this checkout: fetch it (actions/checkout with "
            "fetch-depth: 0, or GIT_DEPTH: 0 on GitLab)"
        )
    merge_base = _git(cwd, "merge-base", ref, "HEAD").strip()
    out = _git(cwd, "diff", "--name-status", "--no-renames", merge_base, "HEAD", "--", "flows/")
    files: dict[str, str | None] = {}
    for line in out.splitlines():
        status, _, path = line.partition("\t")
        if path:
            files[path] = None if status.startswith("D") else (cwd / path).read_text()
    return files


def _git(cwd: Path, *args: str, check: bool = True) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0 and check:
        raise InvalidInput(f"git {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout if done.returncode == 0 else ""


def annotate(problems: list[dict[str, Any]], *, style: str) -> list[str]:
    lines = []
    for p in problems:
        severity = "error" if p.get("severity") == "error" else "warning"
        file, line, col = p.get("file"), p.get("line") or 1, p.get("column") or 1
        message = str(p.get("message", "")).replace("\n", " ")
        if style == "github":
            lines.append(f"::{severity} file={file},line={line},col={col}::{message}")
        else:
            lines.append(f"{file}:{line}:{col}: {severity}: {message}")
    return lines


@proposal_app.command("ci")
def ci(
    forge: Annotated[
        str | None, typer.Option(help="github | gitlab | gitea (detected in CI).")
    ] = None,
    repo: Annotated[str | None, typer.Option(help="owner/name of the flows repo.")] = None,
    number: Annotated[int | None, typer.Option(help="The pull (merge) request number.")] = None,
    head: Annotated[str | None, typer.Option(help="The head commit (default: HEAD).")] = None,
    base: Annotated[str | None, typer.Option(help="The target branch (default: main).")] = None,
    title: Annotated[str, typer.Option(help="The pull request's title.")] = "",
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the checks.")] = 900.0,
    poll: Annotated[float, typer.Option(help="Seconds between looks at the checks.")] = 2.0,
    directory: Annotated[Path, typer.Option("--dir", help="The checkout.")] = Path("."),
) -> None:
    """Send this pull request's changed flows as a proposal revision; wait; report; exit."""
    found = detect(os.environ)
    head = head or found.get("head") or _git(directory, "rev-parse", "HEAD").strip()
    context = PullContext(
        forge=forge or found.get("forge") or "",
        repo=repo or found.get("repo") or "",
        number=int(number or found.get("number") or 0),
        head=head,
        base=base or found.get("base") or "main",
        head_ref=found.get("head_ref", ""),
        title=title or found.get("title", ""),
        url=found.get("url", ""),
        annotations=found.get("annotations", "plain"),
    )
    if context.forge not in ("github", "gitlab", "gitea") or not context.repo or not context.number:
        raise InvalidInput(
            "not in a pull request build: pass --forge, --repo and --number (GitHub Actions, "
            "Gitea Actions and GitLab merge request pipelines are detected)"
        )
    files = changed_flow_files(context.base, cwd=directory)
    config = cli_config()
    deadline = time.monotonic() + timeout
    with_timeout = Connection(
        config.server_url, token=config.token, transport=transport_override, timeout=timeout
    )
    try:
        data = with_timeout.post(
            "/git/ci",
            json={
                "forge": context.forge, "repo": context.repo, "number": context.number,
                "head": context.head, "title": context.title, "url": context.url,
                "base": context.base, "head_ref": context.head_ref, "files": files,
            },
        )  # fmt: skip
        while data["outcome"] == "running" and time.monotonic() < deadline:
            time.sleep(poll)
            data = with_timeout.get(f"/proposals/{data['proposal_id']}/report")
    finally:
        with_timeout.close()
    for line in annotate(data.get("problems") or [], style=context.annotations):
        typer.echo(line)
    typer.echo(data["markdown"])
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        with open(summary, "a", encoding="utf-8") as handle:
            handle.write(data["markdown"] + "\n")
    typer.echo(f"proposal {data['proposal_id']} revision {data['revision']}: {data['outcome']}")
    raise typer.Exit(verdict(data["statuses"]))  # exactly as "loom proposal checks --wait"
