"""The ZenML dashboard on loopback: `make dashboard` (`python -m braintumor_zenml.dashboard`).

ZenML's local server (the `server` extra of zenml) shows this repository's store: runs, their
DAGs, artifacts, and the run report and drift reports rendered as visualisations. It runs in
the foreground (`zenml login --local --blocking`), so the client keeps using the store
directly (a later `make run` needs no server) and Ctrl+C stops it. A local server has no
login (ZenML's NO_AUTH scheme: whoever reaches 127.0.0.1 can read it, so keep it on
loopback), analytics stay off, and the first-visit survey is skipped for the local user.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

DEFAULT_PORT = 8237
QUIET = {"ZENML_ANALYTICS_OPT_IN": "false", "ZENML_AUTO_OPEN_DASHBOARD": "false"}


def skip_onboarding() -> None:
    """Mark ZenML's onboarding survey as done for the active user (else the dashboard
    opens on the survey instead of the runs)."""
    from zenml.client import Client

    client = Client()
    user = client.active_user
    metadata = dict(user.user_metadata or {})
    if user.email_opted_in is not None and metadata.get("finished_onboarding_survey"):
        return
    client.update_user(
        user.id,
        updated_email_opt_in=False,
        updated_metadata={**metadata, "finished_onboarding_survey": True},
    )


def start(port: int = DEFAULT_PORT) -> subprocess.Popen:
    """Start the local ZenML server in the foreground of a child process."""
    zenml = Path(sys.executable).with_name("zenml")
    command = [str(zenml), "login", "--local", "--blocking", "--port", str(port)]
    return subprocess.Popen(command, env={**os.environ, **QUIET})


def wait_ready(url: str, process: subprocess.Popen, timeout: float = 180.0) -> None:
    """Return once `url`/health answers 200; raise if the server exits or times out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the ZenML server exited with code {process.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"the ZenML server did not answer at {url} within {timeout:.0f} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    args = parser.parse_args(argv)
    os.environ.update(QUIET)
    skip_onboarding()
    url = f"http://127.0.0.1:{args.port}"
    process = start(args.port)
    try:
        wait_ready(url, process)
        print(f"ZenML dashboard: {url} (no login on a local server; Ctrl+C stops it)")
        return process.wait()
    except KeyboardInterrupt:
        return 0
    except (RuntimeError, TimeoutError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=30)


if __name__ == "__main__":
    raise SystemExit(main())
