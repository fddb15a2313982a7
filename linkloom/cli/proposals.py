"""``loom proposal``: open, list, show, plan, diff, checks, comment, approve, request-changes,
rebase, promote, close. Every command goes through the server's API.

``checks`` and ``diff`` exit with the verdict, so CI can gate on it: 0 passed, 1 failed (a case
newly fails, a request has no recording and no stub, an invalid spec), 8 attention (results
differ from production: a reviewer must look), 6 a check could not run (run them again later),
124 still running (``--wait`` ran out of ``--timeout``).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any

import typer

from linkloom.cli import output as out
from linkloom.cli.apps import proposal_app
from linkloom.cli.connection import Connection, connect
from linkloom.cli.flows import WAIT_TIMEOUT_EXIT
from linkloom.cli.output import OutputFormat, OutputOption
from linkloom.errors import InvalidInput

ATTENTION_EXIT = 8  # the checks finished and results differ from production: a reviewer must look
UNAVAILABLE_EXIT = 6  # a check could not run (e.g. no sandbox backend): run them again later

ProposalArg = Annotated[str, typer.Argument(help="The proposal id.")]
PROPOSAL_COLUMNS: list[out.Column] = [
    ("ID", "id"),
    ("STATUS", "status"),
    ("TITLE", "title"),
    ("AUTHOR", "author"),
    ("FLOWS", lambda r: ", ".join(r.get("flows") or [])),
    ("REV", "revision"),
    ("UPDATED", lambda r: out.when(r.get("updated_at"))),
]
CHECK_STYLES = {
    "passed": "green",
    "attention": "yellow",
    "failed": "red",
    "error": "red",
    "running": "cyan",
    "pending": "dim",
    "skipped": "dim",
}


def repo_files(paths: list[Path]) -> dict[str, Any]:
    """``{"files": {...}}`` for paths inside a flows repo layout, else ``{"specs": [...]}``."""
    files: dict[str, str] = {}
    specs: list[str] = []
    for path in paths:
        if not path.is_file():
            raise InvalidInput(f"{path} does not exist or is not a file")
        text = path.read_text()
        repo_path = _repo_path(path)
        if repo_path:
            files[repo_path] = text
        else:
            specs.append(text)
    return {"files": files, "specs": specs}


def _repo_path(path: Path) -> str | None:
    """``flows/<id>/flow.yaml`` or ``flows/<id>/fixtures/<case>.yaml`` from a checkout path."""
    parts = path.resolve().parts
    for i in range(len(parts) - 3, -1, -1):
        rest = parts[i + 2 :]
        if parts[i] == "flows" and (
            (len(rest) == 1 and rest[0] in ("flow.yaml", "flow.yml", "flow.json"))
            or (len(rest) == 2 and rest[0] == "fixtures")
        ):
            return "/".join(parts[i:])
    return None


def print_proposal(p: dict[str, Any]) -> None:
    console = out.console()
    status = p["status"]
    console.print(
        f"[bold]{p['id']}[/bold]  {p['title']}  [{_style(status)}]{status}[/]  "
        f"revision {p['revision']}  by {p['author']}"
    )
    console.print(
        f"branch {p['branch']}  head {p['head_commit'][:12]}  base {p['base_commit'][:12]}"
    )
    console.print("flows: " + ", ".join(p.get("flows") or []))
    if p.get("conflicts"):
        console.print("[red]conflicts with main:[/red] " + ", ".join(p["conflicts"]))
    for check in p.get("checks") or []:
        console.print(
            f"  [{CHECK_STYLES.get(check['status'], 'white')}]{check['status']:8}[/] "
            f"{check['name']:9} {check.get('summary') or ''}"
        )
    needed = p.get("required_approvals", 1)
    console.print(f"approvals: {len(p.get('approvers') or [])}/{needed} {p.get('approvers') or ''}")
    for review in p.get("reviews") or []:
        console.print(
            f"  {review['reviewer']}: {review['decision']} (rev {review['revision']}) "
            f"{review.get('comment') or ''}"
        )
    for comment in p.get("comments") or []:
        console.print(f"  💬 {comment['author']}: {comment['body']}")
    if p.get("promoted_commit"):
        console.print(f"promoted as {p['promoted_commit'][:12]}: {p.get('promoted_versions')}")
    promotion = p.get("promotion") or {}
    for flow_id, owners in (promotion.get("owners") or {}).items():
        console.print(f"owners of {flow_id}: {', '.join(owners)} (one must approve)")
    if promotion.get("reasons"):
        console.print("[yellow]promotion blocked:[/yellow]")
        for reason in promotion["reasons"]:
            console.print(f"  - {reason}", markup=False)


def _style(status: str) -> str:
    return {
        "ready-for-review": "cyan",
        "approved": "green",
        "promoted": "green",
        "stale": "yellow",
        "changes-requested": "yellow",
        "closed": "dim",
    }.get(status, "white")


def _show(data: dict[str, Any], output: OutputFormat) -> None:
    if output is OutputFormat.table:
        print_proposal(data)
    else:
        out.emit(data, output=output)


@proposal_app.command("open")
def open_proposal(
    files: Annotated[
        list[Path] | None, typer.Argument(help="Edited spec or fixture files (flows/<id>/…).")
    ] = None,
    message: Annotated[str, typer.Option("--message", "-m", help="The title.")] = "",
    ref: Annotated[
        str | None, typer.Option(help="A branch/commit of the flows repo (several flows).")
    ] = None,
    description: Annotated[str, typer.Option(help="Longer description.")] = "",
    background: Annotated[bool, typer.Option(help="Do not wait for the checks.")] = False,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Open a proposal from edited files or a git ref; the checks run at once."""
    if not files and not ref:
        raise InvalidInput("give edited files (loom proposal open flows/x/flow.yaml -m …) or --ref")
    body: dict[str, Any] = {
        "title": message or (f"Change {', '.join(p.name for p in files or [])}" if files else ref),
        "description": description,
        "ref": ref,
        "background": background,
        **(repo_files(files) if files else {}),
    }
    with connect() as loom:
        data = loom.post("/proposals", json=body)
    _show(data, output)


@proposal_app.command("list")
def list_proposals(
    status: Annotated[list[str] | None, typer.Option(help="Only these statuses.")] = None,
    flow: Annotated[str | None, typer.Option(help="Only proposals changing this flow.")] = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """List proposals, newest first."""
    with connect() as loom:
        page = loom.call("GET", "/proposals", params={"status": status, "flow_id": flow})
    out.emit(
        page["items"], columns=PROPOSAL_COLUMNS, output=output, title="Proposals",
        empty="no proposals",
    )  # fmt: skip


@proposal_app.command("show")
def show(proposal: ProposalArg, output: OutputOption = OutputFormat.table) -> None:
    """A proposal: status, checks, approvals, reviews, comments and its pull request."""
    with connect() as loom:
        data = loom.get(f"/proposals/{proposal}")
        data["pull_request"] = _pull_request(loom, proposal)
    _show(data, output)
    pull = data["pull_request"]
    if pull and output is OutputFormat.table:
        report = pull["report"]
        state = report["status"] + (f" (retrying: {report['error']})" if report["error"] else "")
        out.console().print(
            f"pull request {pull['url']} ({pull['forge']} {pull['repo']}#{pull['number']}), "
            f"head {pull['head_sha'][:12]}, report {state}",
            markup=False, highlight=False,
        )  # fmt: skip


def _pull_request(loom: Any, proposal: str) -> dict[str, Any] | None:
    from linkloom.sdk.errors import LinkloomAPIError

    try:
        found: dict[str, Any] = loom.get(f"/proposals/{proposal}/pull-request")
    except LinkloomAPIError as exc:
        if exc.status == 404:
            return None
        raise
    return found


def verdict(statuses: Iterable[str]) -> int:
    """The exit code of a set of check statuses (see the module docstring)."""
    found = set(statuses)
    if not found or found & {"pending", "running"}:
        return WAIT_TIMEOUT_EXIT
    if "failed" in found:
        return 1
    if "error" in found:
        return UNAVAILABLE_EXIT
    if "attention" in found:
        return ATTENTION_EXIT
    return 0


def _wait_for_checks(loom: Connection, proposal: str, timeout: float) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    pause = 0.5
    while True:
        data: list[dict[str, Any]] = loom.get(f"/proposals/{proposal}/checks")
        if verdict(c["status"] for c in data) != WAIT_TIMEOUT_EXIT:
            return data
        if time.monotonic() + pause > deadline:
            return data
        time.sleep(pause)
        pause = min(pause * 1.5, 5.0)


@proposal_app.command("checks")
def checks(
    proposal: ProposalArg,
    rerun: Annotated[bool, typer.Option("--run", help="Run the checks again first.")] = False,
    wait: Annotated[bool, typer.Option(help="Wait until every check has finished.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds --wait waits at most.")] = 900.0,
    output: OutputOption = OutputFormat.table,
) -> None:
    """The checks of the current revision; the exit code is their verdict (0 passed, 1 failed,
    8 attention, 6 could not run, 124 still running)."""
    with connect() as loom:
        if rerun:
            loom.call("POST", f"/proposals/{proposal}/checks", json={"background": wait})
        data = (
            _wait_for_checks(loom, proposal, timeout)
            if wait
            else loom.get(f"/proposals/{proposal}/checks")
        )
    code = verdict(c["status"] for c in data)
    if output is not OutputFormat.table:
        out.emit(data, output=output)
        raise typer.Exit(code)
    console = out.console()
    if not data:
        console.print("no checks yet (they start when the proposal is opened or revised)")
    for check in data:
        style = CHECK_STYLES.get(check["status"], "white")
        console.print(f"[{style}]{check['status']:9}[/] {check['name']:9} {check['summary']}")
        if check["name"] == "validate":
            for result in (check["details"].get("flows") or {}).values():
                for problem in result.get("problems") or []:
                    console.print(
                        f"    {problem['file']}:{problem['line']}:{problem['column']}: "
                        f"{problem['severity']}: {problem['message']}",
                        markup=False,
                    )
        if check["name"] == "diff":
            for flow_id, flow_diff in (check["details"].get("flows") or {}).items():
                _print_findings(console, flow_id, flow_diff)
    raise typer.Exit(code)


def _print_findings(console: Any, flow_id: str, data: dict[str, Any]) -> None:
    from rich.text import Text

    marks = {"failed": ("✗", "red"), "attention": ("!", "yellow"), "info": ("·", "dim")}
    for finding in data.get("findings") or []:
        mark, style = marks.get(finding.get("severity"), ("·", "white"))
        line = Text(f"    {mark} ", style=style)
        line.append(f"{flow_id} / {finding.get('text')}")
        console.print(line)


@proposal_app.command("plan")
def plan(proposal: ProposalArg, output: OutputOption = OutputFormat.table) -> None:
    """What promotion would change: spec diff, schedules, triggers, retries, in-flight runs."""
    with connect() as loom:
        data = loom.get(f"/proposals/{proposal}/plan")
    if output is not OutputFormat.table:
        out.emit(data, output=output)
        return
    from rich.text import Text

    console = out.console()
    console.print(f"plan: {data['status']}  {data['summary']}")
    for line in data.get("text") or []:
        console.print(line, markup=False)
    for flow in data.get("flows") or []:
        if flow.get("spec_diff"):
            console.print(Text(""))
            for line in flow["spec_diff"].splitlines():
                style = "green" if line.startswith("+") else "red" if line.startswith("-") else None
                console.print(Text(line, style=style or ""))


@proposal_app.command("diff")
def diff(
    proposal: ProposalArg,
    cases: Annotated[bool, typer.Option("--cases", help="Also one table per case.")] = False,
    all_steps: Annotated[
        bool, typer.Option("--all", help="Show unchanged steps in the tables too.")
    ] = False,
    markdown: Annotated[bool, typer.Option(help="Print the findings as Markdown.")] = False,
    output: OutputOption = OutputFormat.table,
) -> None:
    """What the proposal does differently from production on recorded cases: the findings
    grouped by step and change, then (``--cases``) side-by-side tables per case. Exits with
    the diff check's verdict (0 passed, 1 failed, 8 attention, 124 not finished)."""
    from linkloom.proposals import render
    from linkloom.proposals.models import ProposalDiff

    with connect() as loom:
        data = loom.get(f"/proposals/{proposal}/diff")
    code = verdict([data["status"]]) if data["status"] != "skipped" else 1
    if markdown:
        typer.echo(data.get("markdown") or "no diff yet")
        raise typer.Exit(code)
    if output is not OutputFormat.table:
        out.emit(data, output=output)
        raise typer.Exit(code)
    console = out.console()
    style = CHECK_STYLES.get(data["status"], "white")
    console.print(
        f"diff: [{style}]{data['status']}[/]  {data['summary']}  "
        f"(sandbox: {data.get('backend') or '?'})"
    )
    for flow_id, flow_diff in (data.get("flows") or {}).items():
        console.print(f"[bold]{flow_id}[/bold]")
        console.print(
            render.render_terminal(
                ProposalDiff.from_dict(flow_diff), show_unchanged=all_steps, cases=cases
            )
        )
    raise typer.Exit(code)


def _review(command: str, proposal: str, comment: str, output: OutputFormat) -> None:
    with connect() as loom:
        data = loom.post(f"/proposals/{proposal}/{command}", json={"comment": comment})
    _show(data, output)


@proposal_app.command("approve")
def approve(
    proposal: ProposalArg,
    comment: Annotated[str, typer.Option("--comment", "-m", help="Why.")] = "",
    output: OutputOption = OutputFormat.table,
) -> None:
    """Approve the current revision (reviewers; never your own proposal)."""
    _review("approve", proposal, comment, output)


@proposal_app.command("request-changes")
def request_changes(
    proposal: ProposalArg,
    comment: Annotated[str, typer.Option("--comment", "-m", help="What to change.")] = "",
    output: OutputOption = OutputFormat.table,
) -> None:
    """Ask the author for a new revision."""
    _review("request-changes", proposal, comment, output)


@proposal_app.command("comment")
def comment(
    proposal: ProposalArg,
    body: Annotated[str, typer.Argument(help="The comment.")],
) -> None:
    """Comment on a proposal."""
    with connect() as loom:
        loom.post(f"/proposals/{proposal}/comments", json={"body": body})
    typer.echo(f"{proposal}: commented")


@proposal_app.command("revise")
def revise(
    proposal: ProposalArg,
    files: Annotated[list[Path], typer.Argument(help="Edited files.")],
    message: Annotated[str, typer.Option("--message", "-m", help="What changed.")] = "",
    output: OutputOption = OutputFormat.table,
) -> None:
    """Push a new revision (a new commit on the proposal's branch); the checks run again."""
    with connect() as loom:
        data = loom.post(
            f"/proposals/{proposal}/revisions", json={"message": message, **repo_files(files)}
        )
    _show(data, output)


@proposal_app.command("rebase")
def rebase(proposal: ProposalArg, output: OutputOption = OutputFormat.table) -> None:
    """Rebase a stale proposal onto main; conflicts are listed (exit 4)."""
    with connect() as loom:
        _show(loom.post(f"/proposals/{proposal}/rebase"), output)


@proposal_app.command("promote")
def promote(proposal: ProposalArg, output: OutputOption = OutputFormat.table) -> None:
    """Merge into main and make the proposal's specs the production versions."""
    with connect() as loom:
        data = loom.post(f"/proposals/{proposal}/promote")
    _show(data, output)


@proposal_app.command("close")
def close(
    proposal: ProposalArg,
    reason: Annotated[str, typer.Option(help="Why.")] = "",
) -> None:
    """Close a proposal without promoting it."""
    with connect() as loom:
        loom.post(f"/proposals/{proposal}/close", json={"reason": reason})
    typer.echo(f"{proposal}: closed")
