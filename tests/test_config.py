"""Configuration: environment, then `.env`, then flags; every variable documented."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from kbsync.config import Settings, load_settings
from kbsync.errors import ConfigError

ROOT = Path(__file__).parent.parent
CONTRACT_VARIABLES = {
    "ELEVENLABS_API_KEY",
    "ELEVENLABS_BASE_URL",
    "GOOGLE_CLOUD_PROJECT",
    "FIRESTORE_EMULATOR_HOST",
    "KBSYNC_DATABASE",
    "KBSYNC_COLLECTION",
    "KBSYNC_CONCURRENCY",
    "KBSYNC_MAX_ATTEMPTS",
    "KBSYNC_BACKOFF_BASE",
    "KBSYNC_BACKOFF_MAX",
    "KBSYNC_REQUEST_TIMEOUT",
    "KBSYNC_LEASE_SECONDS",
    "KBSYNC_RETRY_DELAY_MAX",
}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No kbsync variable from the caller's environment, and an empty working directory."""
    for field in Settings.model_fields.values():
        monkeypatch.delenv(str(field.validation_alias), raising=False)
    monkeypatch.chdir(tmp_path)


def test_defaults_are_the_contracts() -> None:
    settings = load_settings()

    assert settings.api_key is None
    assert settings.base_url == "https://api.elevenlabs.io"
    assert settings.project is None
    assert settings.database == "(default)"
    assert settings.collection == "knowledge_documents"
    assert settings.concurrency == 4
    assert settings.max_attempts == 3
    assert settings.backoff_base == 1
    assert settings.backoff_max == 30
    assert settings.request_timeout == 30
    assert settings.lease_seconds == 300
    assert settings.retry_delay_max == 3600


def test_environment_beats_dotenv_and_a_flag_beats_both(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / ".env").write_text(
        "ELEVENLABS_API_KEY=from-dotenv\nKBSYNC_CONCURRENCY=2\nKBSYNC_COLLECTION=from_dotenv\n",
        encoding="utf-8",
    )
    monkeypatch.setenv("KBSYNC_CONCURRENCY", "6")

    assert load_settings().require_api_key() == "from-dotenv"
    assert load_settings().collection == "from_dotenv"
    assert load_settings().concurrency == 6
    assert load_settings(concurrency=9).concurrency == 9
    assert load_settings(concurrency=None).concurrency == 6


def test_blank_values_copied_from_the_example_mean_unset(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(
        "ELEVENLABS_API_KEY=\nGOOGLE_CLOUD_PROJECT=\nFIRESTORE_EMULATOR_HOST=\n", encoding="utf-8"
    )

    settings = load_settings()

    assert settings.project is None
    assert settings.emulator_host is None
    with pytest.raises(ConfigError, match="ELEVENLABS_API_KEY is not set"):
        settings.require_api_key()


def test_invalid_values_name_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KBSYNC_CONCURRENCY", "zero")
    monkeypatch.setenv("KBSYNC_MAX_ATTEMPTS", "0")

    with pytest.raises(ConfigError) as caught:
        load_settings()

    assert "KBSYNC_CONCURRENCY" in caught.value.message
    assert "KBSYNC_MAX_ATTEMPTS" in caught.value.message


def test_a_key_that_cannot_be_sent_is_refused_without_echoing_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ELEVENLABS_API_KEY", "sk-abc def\u00e9")

    with pytest.raises(ConfigError) as caught:
        load_settings().require_api_key()

    assert "sk-abc" not in caught.value.message


def test_env_example_lists_every_variable_with_its_default() -> None:
    text = (ROOT / ".env.example").read_text(encoding="utf-8")
    listed = dict(re.findall(r"^([A-Z_]+)=(.*)$", text, flags=re.MULTILINE))
    aliases = {str(field.validation_alias) for field in Settings.model_fields.values()}

    assert set(listed) >= CONTRACT_VARIABLES
    assert set(listed) == aliases
    defaults = load_settings()
    for name, field in Settings.model_fields.items():
        alias = str(field.validation_alias)
        value = getattr(defaults, name)
        if value is None or value == ():
            assert listed[alias] == ""
        elif isinstance(value, bool):
            assert listed[alias] == str(value).lower(), alias
        elif isinstance(value, float):
            assert float(listed[alias]) == value, alias
        else:
            assert listed[alias] == str(value), alias
