"""Settings from the environment and .env, with the key kept out of sight."""

from pathlib import Path

import pytest

from fal_stream.config import Settings
from fal_stream.errors import BadInputError, ConfigError

SENTINEL = "sentinel-key-abcdef123456"


def test_settings_defaults_use_local_without_key() -> None:
    """With no key the built-in backend is used."""
    settings = Settings.from_env({}, dotenv_path=None)
    assert settings.fal_key == "" and not settings.uses_fal
    assert settings.min_interval_s == pytest.approx(0.128)


def test_settings_key_from_id_and_secret() -> None:
    """FAL_KEY_ID and FAL_KEY_SECRET are joined with a colon."""
    settings = Settings.from_env(
        {"FAL_KEY_ID": "id", "FAL_KEY_SECRET": "secret"}, dotenv_path=None
    )
    assert settings.fal_key == "id:secret" and settings.uses_fal


def test_settings_env_wins_over_dotenv(tmp_path: Path) -> None:
    """The .env file fills gaps; the environment overrides it."""
    dotenv = tmp_path / ".env"
    dotenv.write_text("FAL_STREAM_FRAME_SIZE=256\nFAL_STREAM_MIN_INTERVAL_MS=50\n")
    settings = Settings.from_env({"FAL_STREAM_FRAME_SIZE": "384"}, dotenv_path=dotenv)
    assert settings.frame_size == 384
    assert settings.min_interval_s == pytest.approx(0.05)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"FAL_STREAM_FRAME_SIZE": "big"}, "FAL_STREAM_FRAME_SIZE"),
        ({"FAL_STREAM_FRAME_SIZE": "5000"}, "FAL_STREAM_FRAME_SIZE must be between"),
        (
            {"FAL_STREAM_MIN_INTERVAL_MS": "-5"},
            "FAL_STREAM_MIN_INTERVAL_MS must be between 0 and 5000, not -5",
        ),
        ({"FAL_STREAM_JPEG_QUALITY": "nan"}, "FAL_STREAM_JPEG_QUALITY"),
        ({"FAL_STREAM_BACKEND": "cloud"}, "FAL_STREAM_BACKEND must be"),
        ({"FAL_STREAM_BACKEND": "fal"}, "needs a key"),
    ],
)
def test_settings_bad_values_say_what_to_fix(env: dict[str, str], message: str) -> None:
    """A bad value is refused with the variable or setting it concerns."""
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env, dotenv_path=None)


def test_settings_bad_app_id() -> None:
    """A malformed app id is refused at start, not at the first frame."""
    with pytest.raises(BadInputError):
        Settings.from_env({"FAL_STREAM_APP_ID": "nonsense"}, dotenv_path=None)


def test_settings_never_show_the_key() -> None:
    """Neither repr nor describe() shows any of the key."""
    settings = Settings(fal_key=SENTINEL)
    assert SENTINEL not in repr(settings)
    assert SENTINEL not in str(settings.describe())
    assert settings.describe()["fal_key"] == "(set, hidden)"
