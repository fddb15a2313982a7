"""The flows repo on a real git repository in tmp_path."""

from __future__ import annotations

from pathlib import Path

import git
import pytest

from linkloom.flows.gitstore import (
    AsyncFlowsRepo,
    FlowsRepo,
    MergeConflict,
    RefNotFound,
    content_hash,
)

SPEC = "id: {id}\nsteps:\n  - id: a\n    type: transform\n    template: {value}\n"


def _spec(flow_id: str, value: int = 1) -> str:
    return SPEC.format(id=flow_id, value=value)


@pytest.fixture
def seed(tmp_path: Path) -> Path:
    root = tmp_path / "seed"
    (root / "daily-report" / "fixtures").mkdir(parents=True)
    (root / "daily-report" / "flow.yaml").write_text(_spec("daily-report"))
    (root / "daily-report" / "fixtures" / "case-1.yaml").write_text("name: case-1\n")
    (root / "single.yaml").write_text(_spec("hello"))
    (root / "notes.yaml").write_text("just: data\n")
    return root


@pytest.fixture
def repo(tmp_path: Path, seed: Path) -> FlowsRepo:
    r = FlowsRepo(tmp_path / "flows")
    r.init(seed_from=seed)
    return r


def test_gitstore_init_seeds_flows_and_fixtures_on_main(repo: FlowsRepo) -> None:
    flows = repo.read_main()
    assert sorted(flows) == ["daily-report", "hello"]
    f = flows["daily-report"]
    assert f.path == "flows/daily-report/flow.yaml"
    assert f.text == _spec("daily-report")
    assert f.commit == repo.head("main")
    assert f.content_hash == content_hash(f.text)
    assert repo.fixture_files("daily-report") == {"case-1": "name: case-1\n"}
    assert git.Repo(repo.path).active_branch.name == "main"


def test_gitstore_init_is_idempotent(repo: FlowsRepo, seed: Path) -> None:
    head = repo.head()
    assert FlowsRepo(repo.path).init(seed_from=seed) == head


def test_gitstore_commit_files_on_branch_keeps_main_checked_out(repo: FlowsRepo) -> None:
    main = repo.head()
    repo.create_branch("proposals/p1", "main")
    sha = repo.commit_files(
        "proposals/p1",
        {
            "flows/daily-report/flow.yaml": _spec("daily-report", 2),
            "flows/new/flow.yaml": _spec("new"),
        },
        "Change daily-report",
        author="Ann <ann@example.org>",
    )
    assert repo.head("proposals/p1") == sha
    assert repo.head("main") == main
    g = git.Repo(repo.path)
    assert g.active_branch.name == "main"
    assert not g.is_dirty(untracked_files=True)
    assert (repo.path / "flows/daily-report/flow.yaml").read_text() == _spec("daily-report")
    commit = g.commit(sha)
    assert commit.author.name == "Ann"
    assert commit.author.email == "ann@example.org"
    assert commit.message.strip() == "Change daily-report"
    assert repo.file_at(sha, "flows/daily-report/flow.yaml") == _spec("daily-report", 2)
    assert repo.file_at("main", "flows/new/flow.yaml") is None
    changes = {c.flow_id: c.kind for c in repo.changed_flows("main", "proposals/p1")}
    assert changes == {"daily-report": "modified", "new": "added"}


def test_gitstore_commit_files_deletes_with_none_and_skips_empty_commits(repo: FlowsRepo) -> None:
    repo.create_branch("b", "main")
    before = repo.head("b")
    assert repo.commit_files("b", {"flows/hello/flow.yaml": _spec("hello")}, "noop") == before
    sha = repo.commit_files("b", {"flows/hello/flow.yaml": None}, "Remove hello")
    assert "hello" not in repo.read_flows(sha)
    assert [c.kind for c in repo.changed_flows("main", "b")] == ["deleted"]


def test_gitstore_merge_creates_merge_commit_and_updates_checkout(repo: FlowsRepo) -> None:
    repo.create_branch("proposals/p1", "main")
    repo.commit_files("proposals/p1", {"flows/hello/flow.yaml": _spec("hello", 5)}, "edit")
    # main moves meanwhile on another flow: still mergeable
    repo.create_branch("other", "main")
    repo.commit_files("other", {"flows/daily-report/flow.yaml": _spec("daily-report", 9)}, "x")
    repo.merge("other", "Promote other", fast_forward=True)
    result = repo.merge("proposals/p1", "Promote proposal p1 (approved by bob)", author="bob")
    assert not result.fast_forward
    assert repo.head("main") == result.sha
    commit = git.Repo(repo.path).commit(result.sha)
    assert len(commit.parents) == 2
    assert "approved by bob" in commit.message
    flows = repo.read_main()
    assert flows["hello"].text == _spec("hello", 5)
    assert flows["daily-report"].text == _spec("daily-report", 9)
    assert (repo.path / "flows/hello/flow.yaml").read_text() == _spec("hello", 5)
    assert not git.Repo(repo.path).is_dirty(untracked_files=True)
    assert repo.log("flows/hello/flow.yaml")[0].sha == result.sha


def test_gitstore_merge_conflict_names_files_and_leaves_main_untouched(repo: FlowsRepo) -> None:
    repo.create_branch("a", "main")
    repo.create_branch("b", "main")
    repo.commit_files("a", {"flows/hello/flow.yaml": _spec("hello", 2)}, "a")
    repo.commit_files("b", {"flows/hello/flow.yaml": _spec("hello", 3)}, "b")
    repo.merge("a", "Promote a")
    main = repo.head()
    with pytest.raises(MergeConflict) as info:
        repo.merge("b", "Promote b")
    assert info.value.files == ["flows/hello/flow.yaml"]
    assert "flows/hello/flow.yaml" in info.value.message
    assert repo.head() == main
    assert repo.conflicts_with_main("b") == ["flows/hello/flow.yaml"]
    with pytest.raises(MergeConflict):
        repo.rebase("b", message="rebase b")


def test_gitstore_rebase_puts_branch_on_top_of_main(repo: FlowsRepo) -> None:
    repo.create_branch("p", "main")
    repo.commit_files("p", {"flows/hello/flow.yaml": _spec("hello", 2)}, "p1")
    repo.commit_files("p", {"flows/hello/flow.yaml": _spec("hello", 3)}, "p2")
    repo.create_branch("q", "main")
    repo.commit_files("q", {"flows/daily-report/flow.yaml": _spec("daily-report", 4)}, "q")
    repo.merge("q", "Promote q")
    assert not repo.is_ancestor("main", "p")
    sha = repo.rebase("p", message="Rebase p onto main")
    assert repo.is_ancestor("main", "p")
    assert repo.merge_base("main", "p") == repo.head()
    assert repo.file_at(sha, "flows/hello/flow.yaml") == _spec("hello", 3)
    assert repo.file_at(sha, "flows/daily-report/flow.yaml") == _spec("daily-report", 4)
    assert [c.flow_id for c in repo.changed_flows("main", "p")] == ["hello"]


def test_gitstore_merge_main_into_branch(repo: FlowsRepo) -> None:
    repo.create_branch("p", "main")
    repo.commit_files("p", {"flows/hello/flow.yaml": _spec("hello", 2)}, "p1")
    repo.create_branch("q", "main")
    repo.commit_files("q", {"flows/daily-report/flow.yaml": _spec("daily-report", 4)}, "q")
    repo.merge("q", "Promote q")
    sha = repo.merge_main_into("p")
    assert repo.is_ancestor("main", sha)
    assert repo.file_at("p", "flows/daily-report/flow.yaml") == _spec("daily-report", 4)


def test_gitstore_unknown_ref_raises_not_found(repo: FlowsRepo) -> None:
    with pytest.raises(RefNotFound, match="nope"):
        repo.head("nope")


async def test_gitstore_async_wrapper_runs_in_thread(repo: FlowsRepo) -> None:
    arepo = AsyncFlowsRepo(repo)
    flows = await arepo.read_main()
    assert "hello" in flows
    assert await arepo.head("main") == repo.head("main")


def test_gitstore_seeds_from_the_example_flows(tmp_path: Path) -> None:
    examples = Path(__file__).resolve().parents[3] / "examples" / "flows"
    repo = FlowsRepo(tmp_path / "flows")
    repo.init(seed_from=examples)
    flows = repo.read_main()
    assert "daily-report" in flows
    assert flows["daily-report"].text == (examples / "daily-report" / "flow.yaml").read_text()
