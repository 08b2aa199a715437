"""Importing the library (or the steps) turns TensorFlow's oneDNN kernels on, unless the user
chose otherwise. TensorFlow reads the switch once, at import, so each case is a new process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# The switch as the process sees it, and whether TensorFlow took it (on CPUs with AVX512_VNNI
# and the like TensorFlow turns oneDNN on by itself, so the switch is checked as well).
ONEDNN_STATE = (
    "import os; from tensorflow.python.util import _pywrap_util_port; "
    "print(os.environ.get('TF_ENABLE_ONEDNN_OPTS'), _pywrap_util_port.IsMklEnabled())"
)


def _onednn_after(first_import: str, switch: str | None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    if switch is not None:
        env["TF_ENABLE_ONEDNN_OPTS"] = switch
    done = subprocess.run(
        [sys.executable, "-c", f"{first_import}; {ONEDNN_STATE}"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip().splitlines()[-1]


def test_a_step_module_gets_onednn_even_though_it_imports_keras_first() -> None:
    # steps/train_backbone.py imports keras before braintumor (import order); the steps
    # package imports the library first.
    assert _onednn_after("import steps.train_backbone", None) == "1 True"


@pytest.mark.parametrize(("switch", "expected"), [("0", "0 False"), ("1", "1 True")])
def test_the_users_own_switch_wins(switch: str, expected: str) -> None:
    assert _onednn_after("import braintumor", switch) == expected
