"""Scrubbing of tokens and keys from log lines, third-party loggers included."""

import logging

import jwt
import pytest

from fal_stream.redact import RedactingFilter, install_redaction, scrub

# Minted here rather than pasted: a token shape only, signed with a test secret.
JWT = jwt.encode({"allowed_apps": ["x"]}, "a test signing secret of 32 bytes", "HS256")


@pytest.mark.parametrize(
    "text",
    [
        f"GET /fal-ai/x/realtime?fal_jwt_token={JWT}&max_buffering=2 HTTP/1.1",
        f"Authorization: Bearer {JWT}",
        "Authorization: Key abc123def456:secretpart",
        f"token is {JWT}",
    ],
)
def test_scrub_hides_tokens_and_keys(text: str) -> None:
    """Tokens in URLs, headers and free text are hidden."""
    clean = scrub(text)
    assert JWT not in clean and "secretpart" not in clean


def test_scrub_hides_given_secrets() -> None:
    """An exact secret is hidden wherever it appears."""
    assert "s3cr3t" not in scrub("key=s3cr3t;", "s3cr3t")


def test_install_redaction_covers_websockets_debug(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The websockets client logger, which logs the handshake path at DEBUG, is
    scrubbed once redaction is installed."""
    install_redaction("my-key-value")
    logger = logging.getLogger("websockets.client")
    with caplog.at_level(logging.DEBUG, logger="websockets.client"):
        logger.debug("> GET /x/realtime?fal_jwt_token=%s HTTP/1.1", JWT)
        logger.debug("using key %s", "my-key-value")
    assert JWT not in caplog.text and "my-key-value" not in caplog.text
    assert "[redacted]" in caplog.text
    assert any(isinstance(f, RedactingFilter) for f in logger.filters)
