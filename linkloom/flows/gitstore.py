"""The flows repo: a real git repository whose ``main`` branch is production.

Layout (see ``docs/gitops.md``)::

    flows/<flow-id>/flow.yaml            the spec (flow.yml / flow.json also accepted)
    flows/<flow-id>/fixtures/<case>.yaml hand-written or exported fixture cases

Every write goes through git plumbing on a private index file (``GIT_INDEX_FILE``) and ends with a
compare-and-swap ``update-ref``, so branches are committed to and merged WITHOUT checking them out:
the server's working tree stays on ``main``. Merges use ``git merge-tree --write-tree`` (git ≥ 2.38)
and never touch ``main`` when they conflict.

``FlowsRepo`` is synchronous (GitPython shells out to git). Async callers use ``AsyncFlowsRepo``,
which runs every method in ``asyncio.to_thread``.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import re
import subprocess
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import git
import yaml
from git.objects import Blob
from gitdb import IStream

from linkloom.errors import Conflict, InvalidInput, NotFound

MAIN = "main"
FLOWS_DIR = "flows"
SPEC_NAMES = ("flow.yaml", "flow.yml", "flow.json")
DEFAULT_AUTHOR = "Link Loom <loom@localhost>"
_AUTHOR_RE = re.compile(r"^\s*(?P<name>[^<]+?)\s*<(?P<email>[^>]+)>\s*$")
_BRANCH_RE = re.compile(r"^(?!/)(?!.*//)(?!.*\.\.)(?!.*@\{)[A-Za-z0-9._/-]+(?<!/)(?<!\.lock)$")


class MergeConflict(Conflict):
    """Merging {source!r} into {target!r} conflicts in {files}; rebase the proposal and fix them."""

    code = "merge_conflict"
    files: list[str]  # the conflicting paths (set by the constructor's fields)


class RefNotFound(NotFound):
    """Git ref {ref!r} not found in the flows repo; list branches with 'git branch'."""

    code = "ref_not_found"


class RefMoved(Conflict):
    """Branch {branch!r} moved while it was being updated; retry the operation."""

    code = "ref_moved"


class InvalidBranchName(InvalidInput):
    """{name!r} is not a valid branch name: use letters, digits, '.', '_', '-' and '/'."""

    code = "invalid_branch_name"


@dataclass(frozen=True, slots=True, kw_only=True)
class FlowFile:
    """One flow spec file as stored at a commit."""

    flow_id: str
    path: str  # repo-relative, e.g. flows/daily-report/flow.yaml
    text: str
    commit: str  # the commit it was read at
    content_hash: str  # sha256 of the text: what a flow version records with ``commit``


@dataclass(frozen=True, slots=True, kw_only=True)
class FlowChange:
    """How one flow differs between two refs."""

    flow_id: str
    kind: str  # added | modified | deleted
    paths: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class CommitInfo:
    sha: str
    author: str
    email: str
    at: datetime
    message: str


@dataclass(frozen=True, slots=True, kw_only=True)
class MergeResult:
    """A successful merge: the new head and whether it was a fast-forward."""

    sha: str
    fast_forward: bool = False
    parents: tuple[str, ...] = field(default_factory=tuple)


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def flow_id_of(path: str) -> str | None:
    """``flows/<id>/...`` → ``<id>``; anything else → None."""
    parts = path.split("/")
    if len(parts) >= 3 and parts[0] == FLOWS_DIR:
        return parts[1]
    return None


def spec_path(flow_id: str, name: str = "flow.yaml") -> str:
    return f"{FLOWS_DIR}/{flow_id}/{name}"


def fixture_path(flow_id: str, case: str) -> str:
    return f"{FLOWS_DIR}/{flow_id}/fixtures/{case}.yaml"


class FlowsRepo:
    """A git repository of flow specs. Synchronous; thread-safe for concurrent writers."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()
        self._repo: git.Repo | None = None

    # ---------------------------------------------------------------- setup

    @property
    def repo(self) -> git.Repo:
        if self._repo is None:
            try:
                self._repo = git.Repo(self.path)
            except (git.NoSuchPathError, git.InvalidGitRepositoryError) as exc:
                raise NotFound(
                    "No flows repo at {path}; create one with 'loom sync' or FlowsRepo.init()",
                    path=str(self.path),
                ) from exc
        return self._repo

    def exists(self) -> bool:
        return (self.path / ".git").exists()

    def init(
        self, *, seed_from: str | os.PathLike[str] | None = None, author: str = DEFAULT_AUTHOR
    ) -> str:
        """Create the repo with a ``main`` branch (idempotent) and return main's head.

        ``seed_from`` may hold a repo layout (``flows/<id>/flow.yaml``), flow directories
        (``<id>/flow.yaml`` + ``<id>/fixtures/``) or single spec files (``<name>.yaml`` whose
        ``id`` names the flow). Seeding happens only when the repo is new.
        """
        with self._lock:
            if self.exists():
                return self.head(MAIN)
            self.path.mkdir(parents=True, exist_ok=True)
            self._repo = git.Repo.init(self.path, initial_branch=MAIN)
            with self._repo.config_writer() as cfg:
                cfg.set_value("user", "name", "Link Loom")
                cfg.set_value("user", "email", "loom@localhost")
            files = _seed_files(Path(seed_from)) if seed_from else {}
            files.setdefault(f"{FLOWS_DIR}/.keep", "")
            files.setdefault("README.md", _README)
            sha = self._commit_tree(
                branch=MAIN, parents=[], files=files, message="Initialise flows repo", author=author
            )
            self.repo.git.reset("--hard", sha)
            return sha

    # ---------------------------------------------------------------- reading

    def head(self, branch: str = MAIN) -> str:
        return self.resolve(branch)

    def resolve(self, ref: str) -> str:
        """The commit sha a branch, tag or sha names."""
        try:
            sha: str = self.repo.git.rev_parse("--verify", "--quiet", f"{ref}^{{commit}}")
            return sha.strip()
        except git.GitCommandError as exc:
            raise RefNotFound(ref=ref) from exc

    def branches(self, prefix: str = "") -> list[str]:
        out = self.repo.git.for_each_ref("--format=%(refname:short)", f"refs/heads/{prefix}")
        return [line for line in out.splitlines() if line]

    def read_flows(self, ref: str = MAIN) -> dict[str, FlowFile]:
        """Every flow spec at ``ref``, keyed by flow id."""
        commit = self.resolve(ref)
        out: dict[str, FlowFile] = {}
        for path in self.list_files(commit, FLOWS_DIR):
            parts = path.split("/")
            if len(parts) == 3 and parts[2] in SPEC_NAMES and parts[1] not in out:
                text = self._cat(commit, path)
                out[parts[1]] = FlowFile(
                    flow_id=parts[1],
                    path=path,
                    text=text,
                    commit=commit,
                    content_hash=content_hash(text),
                )
        return out

    def read_main(self) -> dict[str, FlowFile]:
        return self.read_flows(MAIN)

    def read_flow(self, flow_id: str, ref: str = MAIN) -> FlowFile | None:
        commit = self.resolve(ref)
        for name in SPEC_NAMES:
            text = self.file_at(commit, spec_path(flow_id, name))
            if text is not None:
                return FlowFile(
                    flow_id=flow_id,
                    path=spec_path(flow_id, name),
                    text=text,
                    commit=commit,
                    content_hash=content_hash(text),
                )
        return None

    def fixture_files(self, flow_id: str, ref: str = MAIN) -> dict[str, str]:
        """``{case name: yaml text}`` of ``flows/<id>/fixtures/*.yaml`` at ``ref``."""
        commit = self.resolve(ref)
        prefix = f"{FLOWS_DIR}/{flow_id}/fixtures"
        out: dict[str, str] = {}
        for path in self.list_files(commit, prefix):
            name = path.rsplit("/", 1)[-1]
            if name.endswith((".yaml", ".yml", ".json")) and path.count("/") == 3:
                out[name.rsplit(".", 1)[0]] = self._cat(commit, path)
        return out

    def list_files(self, ref: str, under: str = "") -> list[str]:
        args = ["-r", "--name-only", "--full-tree", self.resolve(ref)]
        if under:
            args += ["--", under]
        return [p for p in self.repo.git.ls_tree(*args).splitlines() if p]

    def file_at(self, ref: str, path: str) -> str | None:
        """The text of ``path`` at ``ref``, or None when the file does not exist there."""
        commit = self.resolve(ref)
        try:
            return self._cat(commit, path)
        except git.GitCommandError:
            return None

    def _cat(self, commit: str, path: str) -> str:
        text: str = self.repo.git.cat_file("-p", f"{commit}:{path}", strip_newline_in_stdout=False)
        return text

    def log(
        self,
        path: str | None = None,
        *,
        ref: str = MAIN,
        limit: int = 50,
        first_parent: bool = True,
    ) -> list[CommitInfo]:
        """Commits on ``ref`` (newest first), only those touching ``path`` when given.

        ``first_parent`` (the default) follows main's own line: one entry per promotion, the
        merge commit rather than the proposal's commits inside it.
        """
        args = [
            *(["--first-parent"] if first_parent else []),
            self.resolve(ref),
            f"--max-count={limit}",
            "--format=%H%x1f%an%x1f%ae%x1f%at%x1f%B%x1e",
        ]
        if path:
            args += ["--", path]
        out = self.repo.git.log(*args)
        commits = []
        for record in out.split("\x1e"):
            record = record.strip("\n")
            if not record:
                continue
            sha, name, email, at, message = record.split("\x1f", 4)
            commits.append(
                CommitInfo(
                    sha=sha,
                    author=name,
                    email=email,
                    at=datetime.fromtimestamp(int(at), tz=UTC),
                    message=message.strip(),
                )
            )
        return commits

    def changed_files(
        self, base: str, head: str, *, since_merge_base: bool = True
    ) -> dict[str, str]:
        """``{path: A|M|D}`` changed from ``base`` to ``head``.

        With ``since_merge_base`` (the default) only what ``head`` changed since it diverged from
        ``base`` counts, like ``git diff base...head``: a proposal's own edits.
        """
        a = self.merge_base(base, head) if since_merge_base else self.resolve(base)
        out = self.repo.git.diff("--name-status", "--no-renames", a, self.resolve(head))
        changes: dict[str, str] = {}
        for line in out.splitlines():
            status, _, path = line.partition("\t")
            if path:
                changes[path] = status[:1]
        return changes

    def changed_sizes(self, base: str, head: str, *, under: str = FLOWS_DIR) -> dict[str, int]:
        """``{path: bytes at head}`` of the files under ``under`` that ``head`` changed since it
        diverged from ``base`` (0 for a deleted file), read without loading any blob."""
        a, b = self.merge_base(base, head), self.resolve(head)
        out = self.repo.git.diff_tree("-r", "--no-renames", "--no-commit-id", a, b, "--", under)
        blobs: dict[str, str] = {}
        for line in out.splitlines():
            meta, _, path = line.partition("\t")
            fields = meta.split()
            if path and len(fields) >= 4:
                blobs[path] = fields[3]
        wanted = sorted({sha for sha in blobs.values() if set(sha) != {"0"}})
        sizes: dict[str, int] = {}
        if wanted:
            found = subprocess.run(
                ["git", "--git-dir", self.repo.git_dir, "cat-file",
                 "--batch-check=%(objectname) %(objectsize)"],
                input="\n".join(wanted) + "\n", capture_output=True, text=True, check=True,
            )  # fmt: skip
            for line in found.stdout.splitlines():
                sha, _, n = line.partition(" ")
                if n.isdigit():
                    sizes[sha] = int(n)
        return {path: sizes.get(sha, 0) for path, sha in blobs.items()}

    def changed_flows(
        self, base: str, head: str, *, since_merge_base: bool = True
    ) -> list[FlowChange]:
        """Flows whose files differ between ``base`` and ``head``, sorted by id."""
        changes = self.changed_files(base, head, since_merge_base=since_merge_base)
        by_flow: dict[str, dict[str, str]] = {}
        for path, status in changes.items():
            flow_id = flow_id_of(path)
            if flow_id:
                by_flow.setdefault(flow_id, {})[path] = status
        out = []
        for flow_id, paths in sorted(by_flow.items()):
            spec_status = next(
                (
                    s
                    for p, s in paths.items()
                    if p.rsplit("/", 1)[-1] in SPEC_NAMES and p.count("/") == 2
                ),
                None,
            )
            kind = {"A": "added", "D": "deleted"}.get(spec_status or "", "modified")
            out.append(FlowChange(flow_id=flow_id, kind=kind, paths=tuple(sorted(paths))))
        return out

    def merge_base(self, a: str, b: str) -> str:
        try:
            base: str = self.repo.git.merge_base(self.resolve(a), self.resolve(b))
            return base.strip()
        except git.GitCommandError as exc:
            raise Conflict("{a!r} and {b!r} share no history", a=a, b=b) from exc

    def is_ancestor(self, ancestor: str, ref: str) -> bool:
        try:
            self.repo.git.merge_base("--is-ancestor", self.resolve(ancestor), self.resolve(ref))
        except git.GitCommandError:
            return False
        return True

    # ---------------------------------------------------------------- writing

    def create_branch(self, name: str, from_ref: str = MAIN) -> str:
        """Create branch ``name`` at ``from_ref``; raises ``Conflict`` when it already exists."""
        _check_branch(name)
        with self._lock:
            sha = self.resolve(from_ref)
            try:
                # The empty old value makes update-ref fail if the branch exists.
                self.repo.git.update_ref(f"refs/heads/{name}", sha, "")
            except git.GitCommandError as exc:
                raise Conflict("Branch {name!r} already exists", name=name) from exc
            return sha

    def commit_time(self, ref: str) -> datetime:
        """When ``ref``'s commit was made (its committer date)."""
        stamp = self.repo.git.log("-1", "--format=%ct", self.resolve(ref)).strip()
        return datetime.fromtimestamp(int(stamp), UTC)

    def collect_garbage(self) -> None:
        """Pack the repo and drop objects no ref reaches that are older than a day (younger
        ones may belong to a commit being written right now)."""
        with self._lock:
            self.repo.git.gc("--quiet", "--prune=1.day.ago")

    def delete_branch(self, name: str) -> None:
        if name == MAIN:
            raise InvalidInput("The main branch cannot be deleted")
        with self._lock:
            sha = self.resolve(name)
            self.repo.git.update_ref("-d", f"refs/heads/{name}", sha)

    def commit_files(
        self,
        branch: str,
        files: Mapping[str, str | None],
        message: str,
        author: str = DEFAULT_AUTHOR,
    ) -> str:
        """Commit ``{path: text}`` (``None`` deletes) on top of ``branch`` without checking it out.

        Returns the new commit sha (or the current head when nothing changed).
        """
        _check_branch(branch)
        with self._lock:
            parent = self.resolve(branch)
            sha = self._commit_tree(
                branch=branch, parents=[parent], files=files, message=message, author=author
            )
            return sha

    def commit_tree(
        self,
        parent: str,
        files: Mapping[str, str | None],
        message: str,
        author: str = DEFAULT_AUTHOR,
    ) -> str:
        """Write a commit of ``files`` on top of commit ``parent`` and move no ref (the caller
        names it, e.g. ``create_branch``). Returns ``parent`` when nothing changed."""
        return self._commit_tree(
            branch=None, parents=[self.resolve(parent)], files=files, message=message,
            author=author,
        )  # fmt: skip

    def merge(
        self,
        branch: str,
        message: str,
        *,
        author: str = DEFAULT_AUTHOR,
        into: str = MAIN,
        fast_forward: bool = False,
    ) -> MergeResult:
        """Merge ``branch`` into ``into`` (main). Conflicts raise ``MergeConflict``, main untouched.

        Without ``fast_forward`` a merge commit always records ``message`` (promotions name the
        proposal and its approvers); with it, a branch ahead of main just moves main.
        """
        with self._lock:
            target = self.resolve(into)
            source = self.resolve(branch)
            if self.is_ancestor(source, target):
                return MergeResult(sha=target, fast_forward=True, parents=(target,))
            if fast_forward and self.is_ancestor(target, source):
                self._move_ref(into, new=source, old=target)
                return MergeResult(sha=source, fast_forward=True, parents=(target,))
            tree = self._merge_tree(target, source, source_name=branch, target_name=into)
            sha = self._write_commit(
                tree=tree, parents=[target, source], message=message, author=author
            )
            self._move_ref(into, new=sha, old=target)
            return MergeResult(sha=sha, parents=(target, source))

    def merge_main_into(
        self, branch: str, *, message: str | None = None, author: str = DEFAULT_AUTHOR
    ) -> str:
        """Bring ``main`` into ``branch`` with a merge commit; conflicts raise ``MergeConflict``."""
        with self._lock:
            result = self.merge(
                MAIN,
                message or f"Merge main into {branch}",
                author=author,
                into=branch,
                fast_forward=True,
            )
            return result.sha

    def rebase(self, branch: str, *, message: str, author: str = DEFAULT_AUTHOR) -> str:
        """Replace ``branch`` by ONE commit on top of main holding all of its changes.

        A squashing rebase: the result is linear (its base is main's head). Conflicts raise
        ``MergeConflict`` and leave the branch untouched.
        """
        with self._lock:
            main = self.resolve(MAIN)
            head = self.resolve(branch)
            if self.is_ancestor(main, head):
                return head
            tree = self._merge_tree(main, head, source_name=branch, target_name=MAIN)
            sha = self._write_commit(tree=tree, parents=[main], message=message, author=author)
            self._move_ref(branch, new=sha, old=head)
            return sha

    def move_branch(self, name: str, to: str, *, expected: str | None = None) -> str:
        """Point branch ``name`` at commit ``to`` (any commit: a force-pushed pull request head
        too); compare-and-swap on ``expected`` when given. Returns ``to``."""
        _check_branch(name)
        with self._lock:
            sha = self.resolve(to)
            old = self.resolve(name) if expected is None else expected
            self._move_ref(name, new=sha, old=old)
            return sha

    def first_parent_commits(self, old: str, new: str) -> list[str]:
        """Commits on ``new``'s first-parent line after ``old``, oldest first."""
        out = self.repo.git.rev_list(
            "--first-parent", "--reverse", f"{self.resolve(old)}..{self.resolve(new)}"
        )
        return [line for line in out.splitlines() if line]

    def parents(self, ref: str) -> list[str]:
        out: str = self.repo.git.rev_list("--parents", "-n", "1", self.resolve(ref))
        return out.split()[1:]

    def conflicts_with_main(self, branch: str) -> list[str]:
        """Files that would conflict if ``branch`` were merged into main now ([] when clean)."""
        try:
            self._merge_tree(
                self.resolve(MAIN), self.resolve(branch), source_name=branch, target_name=MAIN
            )
        except MergeConflict as exc:
            return list(exc.files)
        return []

    # ---------------------------------------------------------------- plumbing

    def _commit_tree(
        self,
        *,
        branch: str | None,
        parents: list[str],
        files: Mapping[str, str | None],
        message: str,
        author: str,
    ) -> str:
        with tempfile.TemporaryDirectory(prefix="loom-index-") as tmp:
            env = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
            g = self.repo.git
            for path in files:  # every path before the first object is written
                _check_path(path)
            if parents:
                g.read_tree(parents[0], env=env)
            for path, text in files.items():
                if text is None:
                    g.update_index("--force-remove", "--", path, env=env)
                    continue
                blob = self._store_blob(text)
                g.update_index("--add", "--cacheinfo", f"100644,{blob},{path}", env=env)
            tree = g.write_tree(env=env).strip()
        if parents and tree == self.repo.git.rev_parse(f"{parents[0]}^{{tree}}").strip():
            return parents[0]  # nothing changed: no empty commit
        sha = self._write_commit(tree=tree, parents=parents, message=message, author=author)
        if branch is not None:
            self._move_ref(branch, new=sha, old=parents[0] if parents else "")
        return sha

    def _write_commit(self, *, tree: str, parents: list[str], message: str, author: str) -> str:
        name, email = parse_author(author)
        env = {
            "GIT_AUTHOR_NAME": name,
            "GIT_AUTHOR_EMAIL": email,
            "GIT_COMMITTER_NAME": name,
            "GIT_COMMITTER_EMAIL": email,
        }
        args: list[str] = [tree]
        for parent in parents:
            args += ["-p", parent]
        args += ["-m", message]
        made: str = self.repo.git.commit_tree(*args, env=env)
        return made.strip()

    def _store_blob(self, text: str) -> str:
        data = text.encode()
        stream = self.repo.odb.store(IStream(Blob.type, len(data), io.BytesIO(data)))
        return str(stream.hexsha.decode() if isinstance(stream.hexsha, bytes) else stream.hexsha)

    def _merge_tree(self, target: str, source: str, *, source_name: str, target_name: str) -> str:
        status, out, err = self.repo.git.merge_tree(
            "--write-tree",
            "--name-only",
            "--no-messages",
            target,
            source,
            with_extended_output=True,
            with_exceptions=False,
        )
        if status == 1:
            lines = [line.strip() for line in out.splitlines()[1:] if line.strip()]
            raise MergeConflict(source=source_name, target=target_name, files=sorted(set(lines)))
        if status != 0:
            raise Conflict("git merge-tree failed: {error}", error=err.strip())
        tree: str = out.splitlines()[0]
        return tree.strip()

    def _move_ref(self, branch: str, *, new: str, old: str) -> None:
        try:
            self.repo.git.update_ref(f"refs/heads/{branch}", new, old)
        except git.GitCommandError as exc:
            raise RefMoved(branch=branch) from exc
        if branch == self._checked_out_branch():
            self._sync_worktree(old, new)

    def _checked_out_branch(self) -> str | None:
        try:
            branch: str = self.repo.git.symbolic_ref("--short", "-q", "HEAD")
            return branch.strip()
        except git.GitCommandError:
            return None

    def _sync_worktree(self, old: str, new: str) -> None:
        """Keep the checked-out files in step with the moved branch (the server's view of main)."""
        if self.repo.bare:
            return
        try:
            if old:
                self.repo.git.read_tree("-m", "-u", old, new)
            else:
                self.repo.git.reset("--hard", new)
        except git.GitCommandError:
            # Local edits in the server's checkout block the update; the refs are the truth.
            self.repo.git.reset("--hard", new)


class AsyncFlowsRepo:
    """``FlowsRepo`` for async code: every method runs in ``asyncio.to_thread``."""

    def __init__(self, repo: FlowsRepo) -> None:
        self.sync = repo

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.sync, name)
        if not callable(attr):
            return attr

        async def call(*args: Any, **kwargs: Any) -> Any:
            return await asyncio.to_thread(attr, *args, **kwargs)

        call.__name__ = name
        return call


def parse_author(author: str) -> tuple[str, str]:
    """``"Ann <ann@x.org>"`` → ``("Ann", "ann@x.org")``; a bare name gets a local address."""
    match = _AUTHOR_RE.match(author or "")
    if match:
        return match["name"], match["email"]
    name = (author or "loom").strip() or "loom"
    return name, f"{re.sub(r'[^A-Za-z0-9._-]', '', name) or 'loom'}@linkloom.local"


def _check_branch(name: str) -> None:
    if not _BRANCH_RE.fullmatch(name or ""):
        raise InvalidBranchName(name=name)


def _check_path(path: str) -> None:
    parts = path.split("/")
    if path.startswith("/") or any(p in ("", ".", "..") or p.lower() == ".git" for p in parts):
        raise InvalidInput(
            "Invalid repo path {path!r}: use a relative path like flows/x/flow.yaml", path=path
        )


def _seed_files(seed: Path) -> dict[str, str]:
    """Files to commit into a new repo from a seed directory (see ``FlowsRepo.init``)."""
    if not seed.is_dir():
        raise NotFound("Seed directory {path} does not exist", path=str(seed))
    root = seed / FLOWS_DIR if (seed / FLOWS_DIR).is_dir() else seed
    files: dict[str, str] = {}
    for entry in sorted(root.iterdir()):
        if entry.is_dir():
            spec = next((entry / n for n in SPEC_NAMES if (entry / n).is_file()), None)
            if spec is None:
                continue
            files[spec_path(entry.name, spec.name)] = spec.read_text()
            fixtures = entry / "fixtures"
            if fixtures.is_dir():
                for fx in sorted(fixtures.iterdir()):
                    if fx.is_file() and fx.suffix in (".yaml", ".yml", ".json"):
                        files[f"{FLOWS_DIR}/{entry.name}/fixtures/{fx.name}"] = fx.read_text()
        elif entry.suffix in (".yaml", ".yml", ".json") and entry.is_file():
            text = entry.read_text()
            try:
                data = yaml.safe_load(text)
            except yaml.YAMLError:
                continue
            if isinstance(data, dict) and isinstance(data.get("id"), str) and "steps" in data:
                name = "flow.json" if entry.suffix == ".json" else "flow.yaml"
                files[spec_path(data["id"], name)] = text
    return files


_README = """# Flows repo

The `main` branch is production: Link Loom runs what is committed here.

    flows/<flow-id>/flow.yaml             a flow spec
    flows/<flow-id>/fixtures/<case>.yaml  fixture cases replayed by the proposal sandbox

Change flows through proposals (`loom proposal open`), not by pushing to main.
"""
