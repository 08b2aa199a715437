"""Helpers shared by the serving tests (imported as `tests.serving.helpers`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

TINY_SIZE = 64


@dataclass(frozen=True)
class Packaged:
    """A model packaged for serving, with what the tests compare against."""

    tag: str
    model_dir: Path
    keras_model: object
    card: object


def sample_images(sample_dir: Path) -> list[tuple[Path, str]]:
    """(path, canonical class) of the real sample images, planted bad files left out."""
    from braintumor.constants import CLASS_ALIASES

    found = []
    for path in sorted(sample_dir.glob("*/*/*")):
        if path.name.startswith("planted_") or path.suffix.lower() not in {".jpg", ".png"}:
            continue
        found.append((path, CLASS_ALIASES[path.parent.name.lower()]))
    return found


def tiny_spec():
    from braintumor.preprocessing import PreprocessSpec

    return PreprocessSpec(image_size=TINY_SIZE, channels=1)


def build_tiny_model(n_classes: int = 4):
    """The real from-scratch backbone (`custom_cnn`), narrow and on 64x64x1: small and fast,
    with the custom normalisation layer serving must be able to load."""
    import keras

    from braintumor.models.backbones import CnnSpec, build_classifier

    keras.utils.set_random_seed(7)
    return build_classifier(
        "custom_cnn",
        input_shape=(TINY_SIZE, TINY_SIZE, 1),
        num_classes=n_classes,
        cnn=CnnSpec(filters=(8, 16, 32)),
    )


def export_onnx(model, path: Path) -> Path:
    """ONNX export with the training code's exporter."""
    from braintumor.models.export import to_onnx

    return to_onnx(model, path)


def load_service(env: dict[str, str]):
    """Import `service.py` afresh with `env` applied (its configuration is read on import).

    Returns the module; `module.BrainTumorClassifier.to_asgi()` is the in-process app.
    """
    import importlib
    import os
    import sys

    for key in [k for k in os.environ if k.startswith("BRAINTUMOR_")]:
        del os.environ[key]
    os.environ.update(env)
    sys.modules.pop("service", None)
    return importlib.import_module("service")


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(bento_tag: str, port: int, env: dict[str, str], log: Path, timeout_s: float = 120):
    """Start `bentoml serve` in its own process group and wait until /readyz answers 200."""
    import subprocess
    import sys
    import time

    import httpx

    command = [sys.executable, "-m", "bentoml", "serve", bento_tag, "--host", "127.0.0.1"]
    command += ["--port", str(port)]
    with open(log, "wb") as out:
        process = subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"bentoml serve exited with {process.returncode}:\n{log.read_text()}"
            )
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    stop_server(process)
    raise RuntimeError(f"bentoml serve not ready after {timeout_s} s:\n{log.read_text()[-3000:]}")


def stop_server(process) -> None:
    """Stop the server's whole process group (its workers too), by the group we started."""
    import os
    import signal
    import subprocess

    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
