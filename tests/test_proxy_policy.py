"""The proxy's checks on origins, secrets, targets, token bodies and rates."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fal_stream.errors import ConfigError
from fal_stream.proxy_policy import (
    FAL_TOKEN_URLS,
    ProxyConfig,
    Refusal,
    allowed_aliases,
    capped_lifetime,
    check_origin,
    check_secret,
    check_target,
    normalize_origin,
    token_app,
    token_body,
)

ALIASES = allowed_aliases(["fal-ai/fast-lcm-diffusion/image-to-image"])

# Each of these must be refused: other hosts, look-alikes, user-info, escapes,
# other schemes, ports, paths and queries.
REFUSED_TARGETS = [
    "https://fal.run/fal-ai/fast-lcm-diffusion",
    "https://queue.fal.run/fal-ai/flux/dev",
    "https://rest.fal.ai/storage/upload/initiate?storage_type=fal-cdn-v3",
    "https://evil.com/tokens/",
    "https://rest.fal.ai.evil.com/tokens/",
    "https://evilfal.ai/tokens/",
    "https://evilrest.fal.ai/tokens/",
    "https://rest-fal.ai/tokens/",
    "https://rest.fal.ai@evil.com/tokens/",
    "https://user:pass@rest.fal.ai/tokens/",
    "https://evil.com#@rest.fal.ai/tokens/",
    "https://evil.com\\@rest.fal.ai/tokens/",
    "https://rest.fal.ai\\@evil.com/tokens/",
    "https://rest.fal.ai%2eevil.com/tokens/",
    "https://rest%2efal%2eai/tokens/",
    "https://rest.fal.ai/tokens%2f",
    "https://rest.fal.ai./tokens/",
    "https://REST.FAL.AI/tokens/",
    "HTTPS://rest.fal.ai/tokens/",
    "https://rest.faI.ai/tokens/",
    "https://rest.fal.\u0430i/tokens/",
    "https://rest\uff0efal\uff0eai/tokens/",
    "https://xn--rest-fal-ai.com/tokens/",
    "https://rest.fal.ai:8443/tokens/",
    "https://rest.fal.ai:0/tokens/",
    "https://rest.fal.ai:99999/tokens/",
    "http://rest.fal.ai/tokens/",
    "ftp://rest.fal.ai/tokens/",
    "wss://rest.fal.ai/tokens/",
    "javascript:alert(1)//rest.fal.ai/tokens/",
    "//rest.fal.ai/tokens/",
    "rest.fal.ai/tokens/",
    "/tokens/",
    "https://rest.fal.ai/tokens",
    "https://rest.fal.ai/tokens/x",
    "https://rest.fal.ai/tokens/../admin",
    "https://rest.fal.ai/tokens/./",
    "https://rest.fal.ai//tokens/",
    "https://rest.fal.ai/Tokens/",
    "https://rest.fal.ai/tokens/?next=https://evil.com",
    "https://rest.fal.ai/tokens/?",
    "https://rest.fal.ai/tokens/#x",
    "https://rest.fal.ai/tokens/ ",
    " https://rest.fal.ai/tokens/",
    "https://rest.fal.ai/tokens/\n",
    "https://rest.fal.ai\t/tokens/",
    "https://[::1]/tokens/",
    "https://127.0.0.1/tokens/",
    "https://169.254.169.254/tokens/",
]


@pytest.mark.parametrize(
    "target",
    [
        "https://rest.fal.ai/tokens/",
        "https://rest.alpha.fal.ai/tokens/",
        "https://rest.fal.ai:443/tokens/",
    ],
)
def test_check_target_allows_the_token_urls(target: str) -> None:
    """fal's token URL, the older alpha one and an explicit default port pass."""
    check_target(target, FAL_TOKEN_URLS)


@pytest.mark.parametrize("target", REFUSED_TARGETS)
def test_check_target_refuses_everything_else(target: str) -> None:
    """Any other URL is refused with 403 and a message naming the allowed URL."""
    with pytest.raises(Refusal) as caught:
        check_target(target, FAL_TOKEN_URLS)

    assert caught.value.status == 403
    assert "is not allowed" in str(caught.value)
    assert "https://rest.fal.ai/tokens/" in str(caught.value)


@pytest.mark.parametrize("target", [None, "", "   "])
def test_check_target_missing_header(target: str | None) -> None:
    """A missing or blank target header is a 400 naming the header."""
    with pytest.raises(Refusal) as caught:
        check_target(target, FAL_TOKEN_URLS)

    assert caught.value.status == 400
    assert "missing the x-fal-target-url header" in str(caught.value)


def test_check_target_configured_rest_url() -> None:
    """A configured token host's URL passes when it is in the allowed list."""
    check_target("http://127.0.0.1:8700/tokens/", ["http://127.0.0.1:8700/tokens/"])
    with pytest.raises(Refusal):
        check_target("http://127.0.0.1:8701/tokens/", ["http://127.0.0.1:8700/tokens/"])


@pytest.mark.parametrize(
    ("origin", "expected"),
    [
        ("https://App.Example.com", "https://app.example.com"),
        ("https://app.example.com:443", "https://app.example.com"),
        ("http://127.0.0.1:7860", "http://127.0.0.1:7860"),
        ("http://[::1]:7860", "http://[::1]:7860"),
        ("null", ""),
        ("file://", ""),
        ("https://app.example.com/path", ""),
        ("https://user@app.example.com", ""),
        ("https://app.example.com:x", ""),
        ("https://\u0430pp.example.com", ""),
    ],
)
def test_normalize_origin(origin: str, expected: str) -> None:
    """Origins are lower-cased with the default port dropped; others become ''."""
    assert normalize_origin(origin) == expected


@pytest.mark.parametrize(
    ("origin", "host"),
    [
        (None, "127.0.0.1:7860"),
        ("http://127.0.0.1:7860", "127.0.0.1:7860"),
        ("https://space.hf.space", "space.hf.space"),
        ("http://space.hf.space", "space.hf.space:80"),
        ("https://other.example.com", "127.0.0.1:7860"),
    ],
)
def test_check_origin_allows_own_allowed_and_none(
    origin: str | None, host: str
) -> None:
    """No origin, the server's own host (any scheme) or an allowed origin pass."""
    check_origin(origin, host, ("https://other.example.com",))


@pytest.mark.parametrize(
    ("origin", "host"),
    [
        ("https://evil.com", "127.0.0.1:7860"),
        ("http://127.0.0.1:7861", "127.0.0.1:7860"),
        ("http://localhost:7860", "127.0.0.1:7860"),
        ("https://space.hf.space.evil.com", "space.hf.space"),
        ("null", "127.0.0.1:7860"),
        ("http://127.0.0.1:7860", None),
        ("", "127.0.0.1:7860"),
    ],
)
def test_check_origin_refuses_other_pages(origin: str, host: str | None) -> None:
    """Pages of another origin are refused with 403 naming the origin."""
    with pytest.raises(Refusal) as caught:
        check_origin(origin, host, ())

    assert caught.value.status == 403
    assert "FAL_STREAM_PROXY_ORIGINS" in str(caught.value)


def test_check_secret() -> None:
    """With a secret set, only the exact header value passes; else 401."""
    check_secret(None, "")
    check_secret("s3cret-value", "s3cret-value")
    for offered in (None, "", "s3cret", "s3cret-value ", "S3CRET-VALUE"):
        with pytest.raises(Refusal) as caught:
            check_secret(offered, "s3cret-value")
        assert caught.value.status == 401
        assert "s3cret" not in str(caught.value)


def test_token_body_forwards_only_known_fields() -> None:
    """A served alias passes; extra fields are dropped and duplicates folded."""
    body = {
        "allowed_apps": ["fast-lcm-diffusion", "fast-lcm-diffusion"],
        "token_expiration": 100,
        "allowed_paths": ["/anything"],
    }

    assert token_body(body, ALIASES, 120) == {
        "allowed_apps": ["fast-lcm-diffusion"],
        "token_expiration": 100,
    }


@pytest.mark.parametrize(
    ("asked", "expected"), [(None, 120), (30, 30), (119.9, 119), (3600, 120)]
)
def test_capped_lifetime(asked: Any, expected: int) -> None:
    """The lifetime defaults to 120 s and is cut to the cap."""
    assert capped_lifetime(asked, 120) == expected


@pytest.mark.parametrize("asked", [0, -5, "120", True, float("inf"), float("nan")])
def test_capped_lifetime_refuses_nonsense(asked: Any) -> None:
    """A lifetime that is not a positive number is a 400."""
    with pytest.raises(Refusal) as caught:
        capped_lifetime(asked, 120)

    assert caught.value.status == 400


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ([], 400),
        ("fast-lcm-diffusion", 400),
        ({}, 400),
        ({"allowed_apps": []}, 400),
        ({"allowed_apps": "fast-lcm-diffusion"}, 400),
        ({"allowed_apps": [1]}, 400),
        ({"allowed_apps": ["flux"]}, 403),
        ({"allowed_apps": ["fast-lcm-diffusion", "flux"]}, 403),
        ({"allowed_apps": ["fal-ai/fast-lcm-diffusion"]}, 403),
        ({"allowed_apps": ["FAST-LCM-DIFFUSION"]}, 403),
        ({"allowed_apps": ["fast-lcm-diffusion"], "token_expiration": "1"}, 400),
    ],
)
def test_token_body_refusals(body: Any, status: int) -> None:
    """Malformed bodies are 400; apps this server does not serve are 403."""
    with pytest.raises(Refusal) as caught:
        token_body(body, ALIASES, 120)

    assert caught.value.status == status
    if status == 403:
        assert "does not mint tokens for" in str(caught.value)
        assert "fast-lcm-diffusion" in str(caught.value)


@pytest.mark.parametrize(
    "requested",
    [
        "fal-ai/fast-lcm-diffusion/image-to-image/realtime",
        "fal-ai/fast-lcm-diffusion/realtime",
        "fal-ai/fast-lcm-diffusion",
        "/fal-ai/fast-lcm-diffusion/",
        "110602490-fast-lcm-diffusion",
    ],
)
def test_token_app_accepts_forms_of_a_served_app(requested: str) -> None:
    """The id forms fal's tokenProvider passes all resolve to the served alias."""
    assert token_app(requested, ALIASES).alias == "fast-lcm-diffusion"


@pytest.mark.parametrize(
    ("requested", "status"),
    [
        (None, 400),
        ("", 400),
        (42, 400),
        ("fast-lcm-diffusion", 400),
        ("fal-ai/flux/dev", 403),
        ("fal-ai/fast-lcm-diffusion-evil", 403),
        ("fal-ai/../fast-lcm-diffusion", 400),
    ],
)
def test_token_app_refusals(requested: Any, status: int) -> None:
    """A missing or malformed id is 400; an app not served is 403."""
    with pytest.raises(Refusal) as caught:
        token_app(requested, ALIASES)

    assert caught.value.status == status


def test_proxy_config_from_env_defaults_off() -> None:
    """With nothing set the proxy is off, same-origin only, 30 mints a minute."""
    config = ProxyConfig.from_env({}, dotenv_path=None)

    assert config == ProxyConfig()
    assert not config.enabled
    assert config.origins == ()
    assert (config.rate_per_min, config.max_token_s) == (30, 120)


def test_proxy_config_from_env_reads_everything() -> None:
    """Every variable is read; the secret stays out of the repr."""
    config = ProxyConfig.from_env(
        {
            "FAL_STREAM_PROXY": "1",
            "FAL_STREAM_PROXY_ORIGINS": "https://a.example.com/, http://127.0.0.1:5173",
            "FAL_STREAM_PROXY_SECRET": "shared-secret-value",
            "FAL_STREAM_PROXY_RATE": "12",
            "FAL_STREAM_PROXY_MAX_TOKEN_S": "60",
            "FAL_STREAM_PROXY_APPS": "fal-ai/flux/dev, fal-ai/lcm-sd15-i2i",
            "FAL_STREAM_PROXY_FORWARDED_HOPS": "1",
        },
        dotenv_path=None,
    )

    assert config.enabled
    assert config.origins == ("https://a.example.com", "http://127.0.0.1:5173")
    assert config.secret == "shared-secret-value"
    assert (config.rate_per_min, config.max_token_s, config.forwarded_hops) == (
        12,
        60,
        1,
    )
    assert config.apps == ("fal-ai/flux/dev", "fal-ai/lcm-sd15-i2i")
    assert "shared-secret-value" not in repr(config)


@pytest.mark.parametrize(
    "environ",
    [
        {"FAL_STREAM_PROXY_RATE": "lots"},
        {"FAL_STREAM_PROXY_RATE": "0"},
        {"FAL_STREAM_PROXY_MAX_TOKEN_S": "86400"},
        {"FAL_STREAM_PROXY_ORIGINS": "https://a.example.com/app"},
        {"FAL_STREAM_PROXY_ORIGINS": "*"},
        {"FAL_STREAM_PROXY_APPS": "flux"},
        {"FAL_STREAM_PROXY_FORWARDED_HOPS": "-1"},
    ],
)
def test_proxy_config_from_env_refuses_bad_values(environ: dict[str, str]) -> None:
    """A malformed or out-of-range value is a ConfigError."""
    with pytest.raises(ConfigError):
        ProxyConfig.from_env(environ, dotenv_path=None)


def test_proxy_config_from_env_reads_dotenv(tmp_path: Path) -> None:
    """A .env file is read too, and the environment wins over it."""
    dotenv = tmp_path / ".env"
    dotenv.write_text("FAL_STREAM_PROXY=1\nFAL_STREAM_PROXY_RATE=5\n")

    config = ProxyConfig.from_env({"FAL_STREAM_PROXY_RATE": "7"}, dotenv_path=dotenv)

    assert config.enabled
    assert config.rate_per_min == 7
