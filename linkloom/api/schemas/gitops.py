"""Shapes of the flows remote's status and of forge webhook answers. Never a credential."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field


class RefusalOut(BaseModel):
    commit: str
    kind: str = Field(
        description="`invalid`: a spec on the remote does not validate; "
        "`diverged`: the remote branch was rewritten (force-pushed)."
    )
    reason: str


class RemoteStatusOut(BaseModel):
    remote: str = Field(description="The remote's URL, without credentials.")
    branch: str = Field(description="The remote's production branch.")
    state: str = Field(
        description="`in-sync`, `pending` (fetched, being imported), `behind` (remote commits "
        "not made production: see `refused` or `last_error`), `diverged`, `unknown`."
    )
    production_commit: str | None = Field(description="The commit production runs.")
    remote_commit: str | None = Field(description="The remote branch's head at the last fetch.")
    last_fetch_at: datetime | None
    last_error: str | None = Field(description="Why the last fetch failed, if it did.")
    refused: RefusalOut | None = None

    @classmethod
    def from_domain(cls, status: Any) -> RemoteStatusOut:
        return cls.model_validate(status.to_dict())


class ImportedOut(BaseModel):
    commit: str
    versions: dict[str, int]
    proposal_id: str | None = None
    actor: str
    reviewed: bool


class FetchOut(BaseModel):
    imported: list[ImportedOut]
    status: RemoteStatusOut
