"""``python -m fal_stream.backend``: arguments, banner and a clean Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from fal_stream.backend.__main__ import parse_args

ROOT = Path(__file__).resolve().parent.parent


def test_main_ws_port_follows_port() -> None:
    """The socket port defaults to the REST port plus one, or a free one."""
    assert parse_args(["--port", "8700"]).ws_port == 8701
    assert parse_args(["--port", "8700", "--ws-port", "9000"]).ws_port == 9000
    assert parse_args([]).ws_port == 0


def test_main_reads_fault_options() -> None:
    """Latency, idle timeout and token lifetime cap are read with their units."""
    args = parse_args(
        ["--latency-ms", "250", "--idle-timeout-s", "5", "--token-lifetime-cap-s", "30"]
    )

    assert (args.latency_ms, args.idle_timeout_s, args.token_lifetime_cap_s) == (
        250,
        5,
        30,
    )


def test_main_serves_until_interrupted() -> None:
    """The command prints where it serves, mints tokens and exits 0 on Ctrl-C."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with subprocess.Popen(
        [sys.executable, "-m", "fal_stream.backend", "--key", "cli-test-key"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        assert process.stdout is not None
        banner = ""
        while "Ctrl-C" not in banner and process.poll() is None:
            banner += process.stdout.readline()
        rest_url = re.search(r"REST URL:\s+(\S+)", banner)
        assert rest_url, banner
        minted = httpx.post(
            f"{rest_url[1]}/tokens/",
            json={"allowed_apps": ["x"], "token_expiration": 10},
            headers={"Authorization": "Key cli-test-key"},
        )
        process.send_signal(signal.SIGINT)
        _, errors = process.communicate(timeout=30)

    assert minted.status_code == 201
    assert process.returncode == 0
    assert "FAL_RUN_HOST=ws://127.0.0.1:" in banner
    assert "cli-test-key" not in banner
    assert "cli-test-key" not in errors
    assert "Traceback" not in errors
