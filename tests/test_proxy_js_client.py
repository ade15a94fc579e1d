"""fal's official JavaScript client against the proxy routes on a Gradio app.

``tests/js/realtime.mjs`` runs ``@fal-ai/client`` (pinned in tests/js/package.json)
under the machine's Node.js. It gets its token through ``/api/fal/proxy`` (the
client's ``proxyUrl``) or ``/api/fal/realtime-token`` (its ``tokenProvider``),
holding no key itself, and its socket is pointed at the built-in backend.
Without node and npm the tests are skipped, unless FAL_STREAM_REQUIRE_NODE=1.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from fal_stream.backend import LocalBackend
from fal_stream.config import Settings
from fal_stream.proxy import proxy_routes
from fal_stream.proxy_policy import ProxyConfig
from fal_stream.runtime import Runtime

from .backend_helpers import APP_ID, encoded_image
from .test_proxy import gradio_app

JS_DIR = Path(__file__).resolve().parent / "js"
REQUIRE_NODE_ENV = "FAL_STREAM_REQUIRE_NODE"
NODE_TIMEOUT_S = 90
NPM_TIMEOUT_S = 300
SECRET = "js-client-shared-secret"


@pytest.fixture
def node() -> str:
    """The node executable, with the pinned packages installed if they were not."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        reason = "node and npm are needed to run fal's JavaScript client"
        if os.environ.get(REQUIRE_NODE_ENV) == "1":
            pytest.fail(f"{reason}, and {REQUIRE_NODE_ENV}=1 requires them")
        pytest.skip(reason)
    if not (JS_DIR / "node_modules" / "@fal-ai" / "client").is_dir():
        # Exactly the versions in package-lock.json, from the npm registry.
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"],
            cwd=JS_DIR,
            check=True,
            timeout=NPM_TIMEOUT_S,
            capture_output=True,
        )
    return node


@pytest.fixture
async def served() -> AsyncIterator[tuple[str, LocalBackend]]:
    """A Gradio app with the proxy on (secret required), and its built-in backend."""
    runtime = Runtime(Settings(backend="local"))
    assert runtime.local is not None
    config = ProxyConfig(enabled=True, secret=SECRET)
    try:
        with gradio_app(proxy_routes(runtime, config)) as base:
            yield base, runtime.local
    finally:
        await runtime.aclose()
        runtime.stop_backend()


def _run_client(
    node: str, served: tuple[str, LocalBackend], tmp_path: Path, **settings: Any
) -> dict[str, Any]:
    """Run realtime.mjs against ``served`` with ``settings``; return its report."""
    base, backend = served
    image = tmp_path / "frame.jpg"
    image.write_bytes(encoded_image(96, 96, "orange"))
    settings |= {
        "server": base,
        "runHost": backend.run_host,
        "app": APP_ID,
        "image": str(image),
    }
    # The client must get its token from us, not from a key of its own.
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAL_KEY")}
    done = subprocess.run(
        [node, "realtime.mjs", json.dumps(settings)],
        cwd=JS_DIR,
        env=env | {"NODE_NO_WARNINGS": "1"},
        capture_output=True,
        text=True,
        timeout=NODE_TIMEOUT_S,
    )
    lines = done.stdout.strip().splitlines()
    assert lines, f"no output; exit {done.returncode}; stderr: {done.stderr[-2000:]}"
    report: dict[str, Any] = json.loads(lines[-1])
    assert done.returncode == 0, (report, done.stderr[-2000:])
    return report


@pytest.mark.parametrize("mode", ["proxy", "tokenProvider"])
async def test_js_client_realtime_through_the_proxy(
    node: str, served: tuple[str, LocalBackend], tmp_path: Path, mode: str
) -> None:
    """fal's JS client mints through our route, sends frames and gets results."""
    report = _run_client(node, served, tmp_path, mode=mode, frames=3, secret=SECRET)

    assert report["errors"] == []
    assert [r["seed"] for r in report["results"]] == [100, 101, 102]
    assert all(r["bytes"] > 0 for r in report["results"])
    assert report["tokens"] == 1
    assert served[1].stats.tokens_minted == 1


async def test_js_client_without_the_secret_gets_no_token(
    node: str, served: tuple[str, LocalBackend], tmp_path: Path
) -> None:
    """Without the shared secret the client's mint is refused and no socket opens."""
    report = _run_client(
        node, served, tmp_path, mode="tokenProvider", frames=1, secret=""
    )

    assert report["results"] == []
    assert len(report["errors"]) == 1
    assert "token route answered 401" in report["errors"][0]
    assert "x-fal-stream-secret" in report["errors"][0]
    assert served[1].stats.tokens_minted == 0
