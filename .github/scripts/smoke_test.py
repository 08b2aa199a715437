"""Smoke test of a running braintumor service (a `bentoml serve` or a container).

Waits for /readyz, posts every image under --images to /predict and checks each answer (a
known label, probabilities that sum to 1, a model version), then checks that a file which is
not an image gets a 4xx with a reason. Standard library only: runs before anything is
installed. Exit code 0 when every check passes, 1 otherwise.

    python .github/scripts/smoke_test.py --url http://127.0.0.1:3000 \
        --images tests/data/sample/Testing
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

CLASSES = {"glioma", "meningioma", "notumor", "pituitary"}
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".dcm"}


def wait_ready(url: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=5) as response:
                if response.status == 200:
                    return
                last = f"HTTP {response.status}"
        except (urllib.error.URLError, OSError) as exc:
            last = str(exc)
        time.sleep(1)
    raise TimeoutError(f"{url}/readyz not ready after {timeout_s:.0f} s ({last})")


def post_image(url: str, path: Path, timeout_s: float = 60) -> tuple[int, dict]:
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; '
            f'filename="{path.name}"\r\nContent-Type: application/octet-stream\r\n\r\n'
        ).encode()
        + path.read_bytes()
        + f"\r\n--{boundary}--\r\n".encode()
    )
    request = urllib.request.Request(
        f"{url}/predict",
        data=body,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, json.loads(exc.read() or b"{}")
        except json.JSONDecodeError:
            return exc.code, {}


def check_prediction(answer: dict) -> str | None:
    """Why `answer` is not a valid prediction, or None."""
    label, probs = answer.get("label"), answer.get("probabilities") or {}
    if label not in CLASSES:
        return f"unknown label {label!r}"
    if set(probs) != CLASSES:
        return f"probabilities for {sorted(probs)}, expected {sorted(CLASSES)}"
    if abs(sum(probs.values()) - 1) > 1e-3:
        return f"probabilities sum to {sum(probs.values()):.4f}"
    if max(probs, key=probs.get) != label:
        return f"label {label} is not the most probable class"
    if not answer.get("model_version"):
        return "no model_version"
    return None


def run(url: str, images: Path, timeout_s: float) -> list[str]:
    """All failures (empty: the service passed)."""
    wait_ready(url, timeout_s)
    files = sorted(
        p for p in images.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
    )
    if not files:
        return [f"no images under {images}"]
    failures = []
    for path in files:
        status, answer = post_image(url, path)
        problem = f"HTTP {status}" if status != 200 else check_prediction(answer)
        if problem:
            failures.append(f"{path}: {problem}")
        else:
            print(f"ok {path.name}: {answer['label']} ({answer.get('confidence', 0):.2f})")
    with tempfile.TemporaryDirectory() as tmp:
        junk = Path(tmp) / "not-an-image.jpg"
        junk.write_bytes(b"this is not an image")
        status, answer = post_image(url, junk)
    if not 400 <= status < 500:
        failures.append(f"a non-image upload got HTTP {status}, expected a 4xx")
    else:
        print(f"ok non-image upload refused with HTTP {status}: {answer}")
    return failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:3000")
    parser.add_argument("--images", type=Path, default=Path("tests/data/sample/Testing"))
    parser.add_argument("--timeout", type=float, default=300, help="seconds to wait for /readyz")
    args = parser.parse_args(argv)
    try:
        failures = run(args.url.rstrip("/"), args.images, args.timeout)
    except TimeoutError as exc:
        failures = [str(exc)]
    for failure in failures:
        print(f"FAIL {failure}", file=sys.stderr)
    print("smoke test passed" if not failures else f"smoke test failed: {len(failures)} problem(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
