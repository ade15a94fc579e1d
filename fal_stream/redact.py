"""Keep keys and tokens out of logs and messages.

A realtime token travels in the socket URL's query string, and websockets logs the
request path at DEBUG, so a filter on the loggers that see URLs is the only way to
keep it out of a log file.
"""

from __future__ import annotations

import logging
import re

_PATTERNS = (
    # Query parameters that carry a token.
    (re.compile(r"(fal_jwt_token=)[^&\s'\"]+"), r"\1[redacted]"),
    # Authorization header values: "Key id:secret", "Bearer jwt".
    (re.compile(r"\b(Key|Bearer)\s+[A-Za-z0-9._~+/:=-]{8,}"), r"\1 [redacted]"),
    # Anything shaped like a JWT: three base64url parts, the first two JSON.
    (
        re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"),
        "[jwt]",
    ),
)

# Loggers of ours and of the libraries that see socket URLs or request headers.
REDACTED_LOGGERS = (
    "fal_stream",
    "websockets",
    "websockets.client",
    "websockets.server",
    "httpx",
    "httpcore",
    "uvicorn",
    "uvicorn.access",
    "uvicorn.error",
)


def scrub(text: str, *secrets: str) -> str:
    """Return ``text`` with tokens, authorization values and ``secrets`` hidden."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class RedactingFilter(logging.Filter):
    """A logging filter that scrubs each record's formatted message.

    Args:
        secrets: Exact strings (a key, for instance) to hide as well as the
            patterns every record is scrubbed of.
    """

    def __init__(self, *secrets: str) -> None:
        super().__init__()
        self.secrets = tuple(s for s in secrets if s)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = scrub(message, *self.secrets)
        if clean != message:
            record.msg, record.args = clean, None
        return True


def install_redaction(*secrets: str) -> None:
    """Attach a :class:`RedactingFilter` to every logger that may see a secret.

    Filters on a logger only see records created through that very logger, so each
    one is named. Calling this again replaces the earlier filter.
    """
    for name in REDACTED_LOGGERS:
        logger = logging.getLogger(name)
        for old in [f for f in logger.filters if isinstance(f, RedactingFilter)]:
            logger.removeFilter(old)
        logger.addFilter(RedactingFilter(*secrets))
