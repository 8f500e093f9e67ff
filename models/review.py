"""Reviewer decisions, as the `approve` and `reject` signals carry them."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class Decision(BaseModel):
    """{"reviewer": "alice", "comment": "optional"}"""

    model_config = ConfigDict(extra="forbid")

    reviewer: str = Field(min_length=1, max_length=200)
    comment: str | None = Field(default=None, max_length=2000)
