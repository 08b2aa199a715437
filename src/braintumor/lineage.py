"""Which code produced a result: the git commit of the working tree."""

from __future__ import annotations

import subprocess
from pathlib import Path


def git_commit(root: Path | str = ".") -> str:
    """HEAD's commit, with `-dirty` when tracked files have uncommitted changes; `unknown`
    outside a git checkout."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("-dirty" if dirty else "")
