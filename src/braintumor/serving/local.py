"""Run a built Bento locally (`bentoml serve <tag>`) for smoke tests, benchmarks and demos.

The server runs in its own process group so that stopping it also stops its workers.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


class ServerError(RuntimeError):
    """The server exited or did not become ready; the message ends with its log."""


@dataclass(frozen=True)
class LocalServer:
    url: str
    process: subprocess.Popen
    log: Path


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def start_bento(
    bento_tag: str,
    port: int | None = None,
    env: Mapping[str, str] | None = None,
    log: str | Path | None = None,
    host: str = "127.0.0.1",
    timeout_s: float = 120,
) -> LocalServer:
    """Start `bentoml serve bento_tag` and wait until GET /readyz answers 200."""
    import httpx

    port = port or free_port(host)
    log = Path(log) if log else Path(os.devnull)
    command = [sys.executable, "-m", "bentoml", "serve", bento_tag, "--host", host]
    command += ["--port", str(port)]
    with open(log, "wb") as out:
        process = subprocess.Popen(
            command,
            env=dict(env) if env is not None else None,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = LocalServer(f"http://{host}:{port}", process, log)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServerError(f"bentoml serve exited with {process.returncode}:\n{_tail(log)}")
        try:
            if httpx.get(f"{server.url}/readyz", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    stop_bento(server)
    raise ServerError(f"bentoml serve was not ready within {timeout_s:.0f} s:\n{_tail(log)}")


def stop_bento(server: LocalServer, timeout_s: float = 20) -> None:
    """SIGTERM the server's process group, SIGKILL it if it does not stop in time."""
    process = server.process
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


@contextmanager
def serving(bento_tag: str, **options) -> Iterator[LocalServer]:
    """`with serving(tag) as server: httpx.post(server.url + "/predict", ...)`."""
    server = start_bento(bento_tag, **options)
    try:
        yield server
    finally:
        stop_bento(server)


def _tail(log: Path, chars: int = 3000) -> str:
    try:
        return log.read_text(errors="replace")[-chars:]
    except OSError:
        return "(no log)"
