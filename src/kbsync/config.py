"""Settings, read from the environment, then from `.env` in the working directory.

Every variable of the contract maps to one field here; `.env.example` lists them with defaults.
"""

from __future__ import annotations

import os
from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from kbsync.errors import ConfigError

DEFAULT_BASE_URL = "https://api.elevenlabs.io"


class Settings(BaseSettings):
    """kbsync's configuration. Field aliases are the contract's variable names."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        populate_by_name=True,
    )

    api_key: Annotated[SecretStr | None, Field(validation_alias="ELEVENLABS_API_KEY")] = None
    base_url: Annotated[str, Field(validation_alias="ELEVENLABS_BASE_URL", min_length=1)] = (
        DEFAULT_BASE_URL
    )
    project: Annotated[str | None, Field(validation_alias="GOOGLE_CLOUD_PROJECT")] = None
    emulator_host: Annotated[str | None, Field(validation_alias="FIRESTORE_EMULATOR_HOST")] = None
    database: Annotated[str, Field(validation_alias="KBSYNC_DATABASE", min_length=1)] = "(default)"
    collection: Annotated[str, Field(validation_alias="KBSYNC_COLLECTION", min_length=1)] = (
        "knowledge_documents"
    )
    concurrency: Annotated[int, Field(validation_alias="KBSYNC_CONCURRENCY", ge=1, le=256)] = 4
    max_attempts: Annotated[int, Field(validation_alias="KBSYNC_MAX_ATTEMPTS", ge=1, le=100)] = 3
    backoff_base: Annotated[float, Field(validation_alias="KBSYNC_BACKOFF_BASE", ge=0)] = 1.0
    backoff_max: Annotated[float, Field(validation_alias="KBSYNC_BACKOFF_MAX", ge=0)] = 30.0
    request_timeout: Annotated[float, Field(validation_alias="KBSYNC_REQUEST_TIMEOUT", gt=0)] = 30.0
    lease_seconds: Annotated[float, Field(validation_alias="KBSYNC_LEASE_SECONDS", gt=0)] = 300.0
    retry_delay_max: Annotated[float, Field(validation_alias="KBSYNC_RETRY_DELAY_MAX", ge=0)] = (
        3600.0
    )
    max_failed_runs: Annotated[
        int, Field(validation_alias="KBSYNC_MAX_FAILED_RUNS", ge=0, le=1000)
    ] = 8
    """Runs in a row a transient failure is retried by `sync` before it waits for retry-failed."""
    folder_id: Annotated[str | None, Field(validation_alias="KBSYNC_FOLDER_ID")] = None
    """The ElevenLabs folder kbsync creates its documents in; how `prune` knows them."""
    agent_ids: Annotated[tuple[str, ...], NoDecode, Field(validation_alias="KBSYNC_AGENT_ID")] = ()
    """Agents whose knowledge base kbsync keeps in step (comma-separated)."""
    agent_usage_mode: Annotated[
        Literal["auto", "prompt"], Field(validation_alias="KBSYNC_AGENT_USAGE_MODE")
    ] = "auto"
    rag: Annotated[bool, Field(validation_alias="KBSYNC_RAG")] = False
    """Start RAG indexing after each push and record its status."""
    rag_model: Annotated[str, Field(validation_alias="KBSYNC_RAG_MODEL", min_length=1)] = (
        "e5_mistral_7b_instruct"
    )

    @field_validator("agent_ids", mode="before")
    @classmethod
    def _split_agents(cls, value: object) -> object:
        """`KBSYNC_AGENT_ID=a,b` names two agents."""
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("project", "emulator_host", "folder_id", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        """`GOOGLE_CLOUD_PROJECT=` copied from .env.example means "not set"."""
        return None if isinstance(value, str) and not value.strip() else value

    def require_api_key(self) -> str:
        """The API key, or a ConfigError saying how to set it."""
        key = self.api_key.get_secret_value().strip() if self.api_key else ""
        if not key:
            raise ConfigError(
                "ELEVENLABS_API_KEY is not set.",
                hint="Set it in the environment or in .env (see .env.example).",
            )
        if not key.isascii() or not key.isprintable() or any(c.isspace() for c in key):
            # Such a key cannot go into an HTTP header; the HTTP library's own error would echo it.
            raise ConfigError(
                "ELEVENLABS_API_KEY holds spaces, control or non-ASCII characters.",
                hint="Copy the key again from the ElevenLabs dashboard.",
            )
        return key

    def masked_key(self) -> str:
        """The key as it may be shown: at most its last 4 characters."""
        key = self.api_key.get_secret_value() if self.api_key else ""
        if not key:
            return "(not set)"
        return "****" + key[-4:] if len(key) >= 12 else "****"

    def export_emulator_host(self) -> None:
        """Let the Firestore library see an emulator host that came from `.env`.

        The library reads `FIRESTORE_EMULATOR_HOST` from the process environment only.
        """
        if self.emulator_host and not os.environ.get("FIRESTORE_EMULATOR_HOST"):
            os.environ["FIRESTORE_EMULATOR_HOST"] = self.emulator_host


_FIELD_TO_ENV = {name: str(field.validation_alias) for name, field in Settings.model_fields.items()}


def load_settings(**overrides: object) -> Settings:
    """Read the settings; flags given as `overrides` (None: not given) beat the environment."""
    given = {key: value for key, value in overrides.items() if value is not None}
    try:
        settings = Settings()
        if given:
            settings = Settings.model_validate({**settings.model_dump(), **given})
    except ValidationError as exc:
        problems = "; ".join(
            f"{_FIELD_TO_ENV.get(str(err['loc'][0]), err['loc'][0])}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(f"Invalid configuration: {problems}") from None
    return settings
