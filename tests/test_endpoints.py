"""App id parsing and URL building, with fal's clients' own examples."""

import pytest

from fal_stream.endpoints import AppId, realtime_url, run_base_url, token_url
from fal_stream.errors import BadInputError


@pytest.mark.parametrize(
    ("app_id", "alias", "canonical"),
    [
        ("fal-ai/fast-lcm-diffusion", "fast-lcm-diffusion", None),
        (
            "fal-ai/fast-lcm-diffusion/image-to-image",
            "fast-lcm-diffusion",
            "fal-ai/fast-lcm-diffusion/image-to-image",
        ),
        ("110602490-lcm-sd15-i2i", "lcm-sd15-i2i", "110602490/lcm-sd15-i2i"),
        ("1234-test", "test", "1234/test"),
        ("workflows/owner/flow/x", "flow", "workflows/owner/flow/x"),
        ("comfy/owner/graph", "graph", "comfy/owner/graph"),
        ("  /fal-ai/fast-turbo-diffusion/ ", "fast-turbo-diffusion", None),
    ],
)
def test_app_id_parse_alias(app_id: str, alias: str, canonical: str | None) -> None:
    """The alias is the second segment, the third under a namespace."""
    parsed = AppId.parse(app_id)
    assert parsed.alias == alias
    if canonical:
        assert str(parsed) == canonical


@pytest.mark.parametrize(
    "app_id", ["", "fal-ai", "workflows/owner", "a/b c", "a/../b?x", "a//b", "-x/y"]
)
def test_app_id_parse_refuses_malformed(app_id: str) -> None:
    """An id that is not owner/app is refused with an example of a good one."""
    with pytest.raises(BadInputError, match="owner/app"):
        AppId.parse(app_id)


def test_realtime_url_default_host_and_path() -> None:
    """The default URL is fal's run host with /realtime appended once."""
    url = realtime_url(AppId.parse("fal-ai/fast-lcm-diffusion"), "tok")
    assert url == "wss://fal.run/fal-ai/fast-lcm-diffusion/realtime?fal_jwt_token=tok"


def test_realtime_url_not_doubled_and_legacy() -> None:
    """A trailing /realtime is not doubled and a legacy id gets its slash."""
    assert realtime_url(AppId.parse("fal-ai/x/realtime"), "t").endswith(
        "/fal-ai/x/realtime?fal_jwt_token=t"
    )
    assert realtime_url(AppId.parse("123-myapp"), "t", path="/custom/path") == (
        "wss://fal.run/123/myapp/custom/path?fal_jwt_token=t"
    )


def test_realtime_url_max_buffering() -> None:
    """max_buffering follows the token and must be within 1 to 60."""
    app = AppId.parse("fal-ai/x")
    assert realtime_url(app, "t", max_buffering=2).endswith(
        "?fal_jwt_token=t&max_buffering=2"
    )
    for bad in (0, 61):
        with pytest.raises(BadInputError, match="between 1 and 60"):
            realtime_url(app, "t", max_buffering=bad)


def test_realtime_url_escapes_token() -> None:
    """A token is query-escaped so it cannot add parameters."""
    url = realtime_url(AppId.parse("fal-ai/x"), "a&b=c")
    assert url.endswith("fal_jwt_token=a%26b%3Dc")


@pytest.mark.parametrize(
    ("host", "base"),
    [
        ("fal.run", "wss://fal.run"),
        ("ws://127.0.0.1:8701/", "ws://127.0.0.1:8701"),
        ("http://127.0.0.1:8701", "ws://127.0.0.1:8701"),
        ("https://example.test", "wss://example.test"),
    ],
)
def test_run_base_url_schemes(host: str, base: str) -> None:
    """A bare host means wss; http(s) maps to ws(s)."""
    assert run_base_url(host) == base


def test_token_url_trailing_slash() -> None:
    """The token endpoint has the trailing slash fal's clients use."""
    assert token_url("https://rest.fal.ai/") == "https://rest.fal.ai/tokens/"
