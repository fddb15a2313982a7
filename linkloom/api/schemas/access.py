"""Token, identity and audit shapes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from linkloom.access import ApiToken, AuditEntry, Role


class TokenOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "tok_1a2b3c4d5e6f7a8b",
                    "name": "ci",
                    "role": "author",
                    "created_at": "2024-05-01T00:00:00Z",
                    "last_used_at": None,
                    "revoked_at": None,
                }
            ]
        }
    )

    id: str
    name: str
    role: Role
    created_at: datetime
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None

    @classmethod
    def from_domain(cls, token: ApiToken) -> TokenOut:
        return cls(
            id=token.id,
            name=token.name,
            role=token.role,
            created_at=token.created_at,
            last_used_at=token.last_used_at,
            revoked_at=token.revoked_at,
        )


class TokenCreatedOut(TokenOut):
    secret: str = Field(description="The token itself. Shown once: store it now.")


class TokenIn(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"name": "ci", "role": "author"}]})

    name: str = Field(min_length=1, max_length=200)
    role: Role


class MeOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"name": "ci", "role": "author", "token_id": "tok_1"}]}
    )

    name: str
    role: Role
    token_id: str | None = None


class AuditOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": 7,
                    "actor": "admin",
                    "action": "run.cancel",
                    "object_type": "run",
                    "object_id": "01HX3Z6V4Q8M2T",
                    "details": {"status": "CANCELLED"},
                    "at": "2024-05-01T03:00:05Z",
                }
            ]
        }
    )

    id: int
    actor: str | None = None
    action: str
    object_type: str
    object_id: str | None = None
    details: dict[str, Any] = Field(default_factory=dict)
    at: datetime

    @classmethod
    def from_domain(cls, entry: AuditEntry) -> AuditOut:
        return cls(
            id=entry.id,
            actor=entry.actor,
            action=entry.action,
            object_type=entry.object_type,
            object_id=entry.object_id,
            details=entry.details,
            at=entry.at,
        )


class AcceptedOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"accepted": True}]})

    accepted: bool = True
    deadline: datetime | None = None
