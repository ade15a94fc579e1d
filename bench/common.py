"""Shared pieces of the benchmarks: statistics, process sampling, reporting.

Every benchmark prints one JSON line (for machines), then a table (for people),
and, when ``BENCH_RESULTS_DIR`` is set or ``--out`` is given, writes the JSON to
``<dir>/<name>.json``. Nothing here times anything by itself.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import secrets
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS_ENV = "BENCH_RESULTS_DIR"
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024

# Run from a checkout without installing the package.
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def percentile(values: Sequence[float], fraction: float) -> float:
    """Return the ``fraction`` quantile (0..1) by linear interpolation, NaN if empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    position = fraction * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summary_ms(seconds: Sequence[float]) -> dict[str, float]:
    """Median, p95, mean and count of durations given in seconds, as milliseconds."""
    ms = [s * 1000 for s in seconds]
    return {
        "p50_ms": round(percentile(ms, 0.5), 3),
        "p95_ms": round(percentile(ms, 0.95), 3),
        "mean_ms": round(statistics.fmean(ms), 3) if ms else float("nan"),
        "n": len(ms),
    }


def slope_per_minute(points: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope of ``(t_s, value)`` points, in value units per minute."""
    if len(points) < 2:
        return float("nan")
    ts = [p[0] for p in points]
    vs = [p[1] for p in points]
    mean_t, mean_v = statistics.fmean(ts), statistics.fmean(vs)
    var = sum((t - mean_t) ** 2 for t in ts)
    if var == 0:
        return float("nan")
    cov = sum((t - mean_t) * (v - mean_v) for t, v in zip(ts, vs, strict=True))
    return cov / var * 60.0


def time_calls(fn: Any, iterations: int, warmup: int = 20) -> list[float]:
    """Call ``fn()`` ``warmup`` times, then ``iterations`` times, timing each in s."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iterations):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


@dataclass
class ProcSample:
    """CPU seconds used and resident memory of a process at one moment."""

    at: float
    cpu_s: float
    rss_mb: float


def sample_process(pid: int) -> ProcSample:
    """Read a process's CPU time (all threads) and RSS from ``/proc``."""
    with open(f"/proc/{pid}/stat") as stat:
        # The command name may hold spaces; fields resume after its ')'.
        fields = stat.read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS
    with open(f"/proc/{pid}/statm") as statm:
        rss_pages = int(statm.read().split()[1])
    return ProcSample(time.monotonic(), cpu, rss_pages * _PAGE_KB / 1024)


def cpu_percent(first: ProcSample, last: ProcSample) -> float:
    """CPU use between two samples, in percent of one core."""
    return 100.0 * (last.cpu_s - first.cpu_s) / max(last.at - first.at, 1e-9)


def machine() -> dict[str, Any]:
    """Describe this machine and the versions that matter to the figures."""
    model = ""
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_gb = 0.0
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal"):
                mem_gb = int(line.split()[1]) / 2**20
                break
    info: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "mem_gb": round(mem_gb, 1),
        "python": platform.python_version(),
    }
    for module in ("gradio", "websockets", "PIL", "msgpack"):
        with contextlib.suppress(ImportError, AttributeError):
            info[module] = __import__(module).__version__
    # Other work on the box skews every figure; say how busy it was.
    info["loadavg_1m"] = os.getloadavg()[0]
    return info


def report(
    name: str,
    result: dict[str, Any],
    header: Sequence[str],
    rows: Iterable[Sequence[Any]],
    out: str | None = None,
) -> None:
    """Print ``result`` as one JSON line and ``rows`` as a table; save the JSON.

    Args:
        name: The benchmark's name; the file is ``<name>.json``.
        result: What to print and save; the machine is added under ``machine``.
        header: Column titles.
        rows: Table rows, one value per column.
        out: Where to save; defaults to ``$BENCH_RESULTS_DIR/<name>.json``.
    """
    result = {"bench": name, **result, "machine": machine()}
    line = json.dumps(result, sort_keys=True, default=str)
    print(line)
    print()
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [
        max(len(str(h)), *(len(r[i]) for r in cells)) if cells else len(str(h))
        for i, h in enumerate(header)
    ]
    print("  ".join(str(h).ljust(w) for h, w in zip(header, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
    target = out or (
        str(Path(os.environ[RESULTS_ENV]) / f"{name}.json")
        if os.environ.get(RESULTS_ENV)
        else None
    )
    if target:
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        Path(target).write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
        print(f"# saved {target}")
    sys.stdout.flush()


def _cell(value: Any) -> str:
    if isinstance(value, float):
        if value != value:  # NaN
            return "-"
        return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


class BackendProcess:
    """A model server in its own process (``bench/backend_proc.py``).

    Use as a context manager; point clients at :attr:`rest_url`,
    :attr:`run_host` and :attr:`key`.

    Args:
        model: ``"preview"`` (the built-in backend) or ``"echo"``.
        cpu: Pin the process to this CPU, or ``None`` to leave it free.
        **options: Command-line options of ``backend_proc.py``, such as
            ``model_latency_s=0.2``.
    """

    def __init__(self, model: str = "preview", cpu: int | None = None, **options: Any):
        self.key = secrets.token_urlsafe(24)
        argv = [sys.executable, str(Path(__file__).with_name("backend_proc.py"))]
        argv += ["--model", model]
        for name, value in options.items():
            if value is not None:
                argv += [f"--{name.replace('_', '-')}", str(value)]
        env = {**os.environ, "BENCH_BACKEND_KEY": self.key}
        self.process = subprocess.Popen(
            argv, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        if cpu is not None:
            os.sched_setaffinity(self.process.pid, {cpu})
        assert self.process.stdout is not None
        ready = json.loads(self.process.stdout.readline())
        self.rest_url: str = ready["rest_url"]
        self.run_host: str = ready["run_host"]

    def stats(self) -> dict[str, Any]:
        """The server's counters now."""
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write("stats\n")
        self.process.stdin.flush()
        counters: dict[str, Any] = json.loads(self.process.stdout.readline())
        return counters

    def close(self) -> None:
        """Stop the process (EOF on its stdin, then a kill after 10 s)."""
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> BackendProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port
