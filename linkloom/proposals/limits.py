"""What a proposal may bring into the flows repo, decided before anything is written to it.

    admit(files, limits)       every path a flow file; each file and the whole change within the
                               size limits; fixture cases, ``fixtures/stubs.yaml`` and
                               ``policy.yaml`` parse; raises before the first git write
    admit_sizes(sizes, ...)    the size limits for a change that arrives as a commit (a git ref,
                               a pull request's head): ``{path: bytes}`` read from the repo
    AuthorBudget               bytes and revisions an author committed in the last hour

Key contract: a refused request writes nothing (no branch, no object). The budget is kept in the
proposal store (``ProposalStore.charge``): the same in every server process and across restarts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from linkloom.errors import InvalidInput, LinkloomError
from linkloom.proposals.models import ProposalLimits, Spending
from linkloom.proposals.ports import ProposalStore

HOUR = timedelta(hours=1)
MIB = 1024 * 1024


class ProposalTooLarge(InvalidInput):
    """The proposal is too large: {reason}. Nothing was written; make the change smaller (limits: 'proposals.*' settings)."""  # noqa: E501  -- the message is one line on purpose

    code = "proposal_too_large"
    http_status = 413


class AuthorQuotaExceeded(InvalidInput):
    """{author!r} has committed {used} in the last hour; the limit is {limit}. Nothing was written; retry in {retry_after} seconds."""  # noqa: E501  -- the message is one line on purpose

    code = "author_quota_exceeded"
    http_status = 429


class InvalidCompanionFile(InvalidInput):
    """{path} cannot be read: {reason}. Nothing was written; fix the file and retry."""

    code = "invalid_flow_file"


def size(text: str | None) -> int:
    return 0 if text is None else len(text.encode("utf-8", "surrogatepass"))


def admit(files: Mapping[str, str | None], limits: ProposalLimits) -> int:
    """Refuse ``files`` (``{repo path: text}``, None deletes) unless every limit holds and
    every companion file parses; returns the bytes they add."""
    admit_sizes({path: size(text) for path, text in files.items()}, limits)
    for path, text in files.items():
        if text is not None:
            problem = companion_problem(path, text)
            if problem is not None:
                raise InvalidCompanionFile(path=path, reason=problem)
    return sum(size(text) for text in files.values())


def admit_sizes(sizes: Mapping[str, int], limits: ProposalLimits) -> int:
    """Refuse a change of ``{path: bytes}`` beyond the file, request and file-count limits."""
    if limits.max_files is not None and len(sizes) > limits.max_files:
        raise ProposalTooLarge(
            reason=f"it changes {len(sizes)} files, more than {limits.max_files}"
        )
    if limits.max_file_bytes is not None:
        for path, n in sizes.items():
            if n > limits.max_file_bytes:
                raise ProposalTooLarge(
                    reason=f"{path} has {_bytes(n)}, more than {_bytes(limits.max_file_bytes)}"
                )
    total = sum(sizes.values())
    if limits.max_bytes is not None and total > limits.max_bytes:
        raise ProposalTooLarge(
            reason=f"its files have {_bytes(total)}, more than {_bytes(limits.max_bytes)}"
        )
    return total


def companion_problem(path: str, text: str) -> str | None:
    """Why a fixture case, ``fixtures/stubs.yaml`` or ``policy.yaml`` at ``path`` does not
    parse (None: it parses, or it is another kind of file). The validate check asks the same."""
    from linkloom.proposals import policy
    from linkloom.sandbox import fixtures

    parts = path.split("/")
    try:
        if len(parts) == 4 and parts[2] == "fixtures" and parts[3].endswith(_FIXTURE_SUFFIXES):
            name = parts[3].rsplit(".", 1)[0]
            if name == fixtures.STUBS_FILE:
                fixtures.stubs_from_texts({name: text})
            else:
                fixtures.loads(text, name=name)
        elif len(parts) == 3 and parts[2] == policy.POLICY_FILE:
            policy.parse(text, where=path)
    except LinkloomError as exc:
        return exc.message
    return None


_FIXTURE_SUFFIXES = (".yaml", ".yml", ".json")


@dataclass(frozen=True, slots=True)
class AuthorBudget:
    """What each author committed through proposals in the last hour, kept in the proposal
    store: every server process sharing the database holds an author to one budget, and a
    restart forgets nothing."""

    limits: ProposalLimits
    store: ProposalStore

    async def spend(self, author: str, n_bytes: int, *, now: datetime) -> None:
        """Charge one request of ``n_bytes`` by ``author``, or refuse it when it would pass a
        limit (``AuthorQuotaExceeded``: nothing is charged). Check and charge are one step in
        the store, so two concurrent requests cannot both take the last unit."""
        if (
            self.limits.author_revisions_per_hour is None
            and self.limits.author_bytes_per_hour is None
        ):
            return

        def admit(spent: Spending) -> None:
            self.check(author, n_bytes, spent, now=now)

        await self.store.charge(author, n_bytes, at=now, since=now - HOUR, admit=admit)

    def check(self, author: str, n_bytes: int, spent: Spending, *, now: datetime) -> None:
        """Refuse one more request of ``n_bytes`` by ``author``, who committed ``spent`` in the
        hour before ``now``, when it would pass a limit."""
        oldest = spent.oldest or now
        retry = max(1, math.ceil((oldest + HOUR - now).total_seconds()))
        revisions = self.limits.author_revisions_per_hour
        if revisions is not None and spent.revisions + 1 > revisions:
            raise AuthorQuotaExceeded(author=author, used=f"{spent.revisions} revisions",
                                      limit=revisions, retry_after=retry)  # fmt: skip
        most = self.limits.author_bytes_per_hour
        if most is not None and spent.bytes + n_bytes > most:
            raise AuthorQuotaExceeded(author=author, used=_bytes(spent.bytes), limit=_bytes(most),
                                      retry_after=retry)  # fmt: skip


def _bytes(n: int) -> str:
    return f"{n / MIB:.1f} MiB ({n:,} bytes)" if n >= MIB else f"{n:,} bytes"
