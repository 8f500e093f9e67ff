"""One settings object, read from the environment once, at the edge (CLI or worker start).

Workflow code never reads it: workflows get what they need through their inputs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

TASK_QUEUE = "stageline"
DEV_KEY_FILE = "dev-master.key"


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True)

    home: Path
    database_url: str
    workspace: str = "default"
    temporal_address: str = "127.0.0.1:7233"
    temporal_namespace: str = "default"
    task_queue: str = TASK_QUEUE
    # The key itself is kept out of repr so it never reaches a log or a traceback.
    master_key: str | None = Field(default=None, repr=False)
    master_key_file: Path | None = None
    # Master keys retired by `stageline vault rotate`, still needed to read Temporal payloads
    # written before the rotation (decoding only; see vault.codec).
    previous_master_key_files: tuple[Path, ...] = ()
    # The bearer token `stageline codec-server` requires (a file, so it stays out of `env`).
    codec_token_file: Path | None = None

    @property
    def dev_key_file(self) -> Path:
        return self.home / DEV_KEY_FILE

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        home = Path(env.get("STAGELINE_HOME") or ".stageline").expanduser().absolute()
        return cls(
            home=home,
            database_url=env.get("STAGELINE_DATABASE_URL")
            or f"sqlite+aiosqlite:///{home / 'stageline.db'}",
            workspace=env.get("STAGELINE_WORKSPACE") or "default",
            temporal_address=env.get("TEMPORAL_ADDRESS") or "127.0.0.1:7233",
            temporal_namespace=env.get("TEMPORAL_NAMESPACE") or "default",
            task_queue=env.get("STAGELINE_TASK_QUEUE") or TASK_QUEUE,
            master_key=env.get("STAGELINE_MASTER_KEY") or None,
            master_key_file=Path(env["STAGELINE_MASTER_KEY_FILE"]).expanduser()
            if env.get("STAGELINE_MASTER_KEY_FILE")
            else None,
            previous_master_key_files=tuple(
                Path(p).expanduser()
                for p in (env.get("STAGELINE_PREVIOUS_MASTER_KEY_FILES") or "").split(os.pathsep)
                if p
            ),
            codec_token_file=Path(env["STAGELINE_CODEC_TOKEN_FILE"]).expanduser()
            if env.get("STAGELINE_CODEC_TOKEN_FILE")
            else None,
        )
