"""The DVC side: data/raw tracked, the clahe stage reproducible, cached and pushed/pulled."""

from __future__ import annotations

import filecmp
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from braintumor.data.ingest import ingest

REPO_ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow

STAGE = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"]["clahe"]
STAGE_DEPS = [dep for dep in STAGE["deps"] if dep.startswith("src/")]
# Loaded by `braintumor data clahe` without shaping what it writes: package markers, the
# CLI's error types and the promotion policy that params.py also parses.
NOT_STAGE_CODE = {
    "src/braintumor/__init__.py",
    "src/braintumor/data/__init__.py",
    "src/braintumor/integrity/__init__.py",
    "src/braintumor/data/sources.py",
    "src/braintumor/data/versioning.py",
    "src/braintumor/promotion.py",
}


def _run(repo: Path, *args: str) -> str:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(args, cwd=repo, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"{args} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


def _dvc(repo: Path, *args: str) -> str:
    return _run(repo, sys.executable, "-m", "dvc", *args)


@pytest.fixture(scope="module")
def repo(sample_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A throwaway project: the real dvc.yaml/params.yaml, the sample ingested and added."""
    root = tmp_path_factory.mktemp("dvc") / "project"
    for name in ["dvc.yaml", "params.yaml", *STAGE_DEPS]:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO_ROOT / name, root / name)
    _run(root, "git", "init", "-q")
    _dvc(root, "init", "-q")
    _dvc(root, "config", "core.analytics", "false")
    _dvc(root, "remote", "add", "-d", "local", str(root.parent / "remote"))
    ingest(sample_dir, out_dir=root / "data" / "raw")
    _dvc(root, "add", "-q", "data/raw")
    return root


def test_repro_runs_the_stage_then_is_a_no_op(repo: Path) -> None:
    first = _dvc(repo, "repro")
    assert "Running stage 'clahe'" in first
    assert len((repo / "data/clahe/manifest.csv").read_text().splitlines()) == 1 + 34
    lock = (repo / "dvc.lock").read_text()
    outputs = {p: p.stat().st_mtime_ns for p in (repo / "data/clahe").rglob("*") if p.is_file()}
    second = _dvc(repo, "repro")
    assert "Running stage" not in second and "up to date" in second
    assert (repo / "dvc.lock").read_text() == lock
    assert {
        p: p.stat().st_mtime_ns for p in (repo / "data/clahe").rglob("*") if p.is_file()
    } == outputs
    assert "clahe" in yaml.safe_load(lock)["stages"]


def test_changing_a_clahe_param_reruns_the_stage(repo: Path) -> None:
    _dvc(repo, "repro")
    before = (repo / "data/clahe/manifest.csv").read_text()
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["clahe"]["clip_limit"] = 4.0
    (repo / "params.yaml").write_text(yaml.safe_dump(params))
    assert "clahe" in _dvc(repo, "status")
    rerun = _dvc(repo, "repro")
    assert "Running stage 'clahe'" in rerun
    assert (repo / "data/clahe/manifest.csv").read_text() != before  # new pixels, new hashes
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    assert lock["stages"]["clahe"]["params"]["params.yaml"]["clahe"]["clip_limit"] == 4.0


def test_push_and_pull_round_trip(repo: Path, tmp_path: Path) -> None:
    _dvc(repo, "repro")
    kept = tmp_path / "kept"
    shutil.copytree(repo / "data", kept)
    _dvc(repo, "push")
    shutil.rmtree(repo / "data/raw")
    shutil.rmtree(repo / "data/clahe")
    shutil.rmtree(repo / ".dvc/cache")
    _dvc(repo, "pull")
    for name in ("raw", "clahe"):
        comparison = filecmp.dircmp(kept / name, repo / "data" / name)
        assert not comparison.left_only and not comparison.right_only and not comparison.diff_files
        assert sum(1 for p in (repo / "data" / name).rglob("*") if p.is_file()) == 35


def test_the_stage_lists_the_code_its_command_runs(sample_dir: Path, tmp_path: Path) -> None:
    """Every module the stage's command (`python -m braintumor.cli data clahe`) loads is a dep,
    or known not to shape its output."""
    assert STAGE["cmd"].startswith("python -m braintumor.cli data clahe ")
    ingest(sample_dir, out_dir=tmp_path / "raw")
    command = ["data", "clahe", "--raw", str(tmp_path / "raw"), "--out", str(tmp_path / "out")]
    code = (
        "import sys\n"
        "from braintumor.cli import app\n"
        "try:\n"
        f"    app({command!r})\n"
        "except SystemExit as exit:\n"
        "    assert not exit.code, exit.code\n"
        "for name, module in sorted(sys.modules.items()):\n"
        "    if name.startswith('braintumor'):\n"
        "        print('loaded', module.__file__)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src")}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    loaded = {
        Path(line.split(" ", 1)[1]).relative_to(REPO_ROOT).as_posix()
        for line in done.stdout.splitlines()
        if line.startswith("loaded ")
    }
    assert loaded - NOT_STAGE_CODE == set(STAGE_DEPS)


def test_committed_pipeline_files_agree() -> None:
    assert "data/raw" in STAGE["deps"] and STAGE["outs"] == ["data/clahe"]
    assert (REPO_ROOT / "data/raw.dvc").is_file(), "data/raw must be tracked by DVC"
    lock = yaml.safe_load((REPO_ROOT / "dvc.lock").read_text())
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    assert lock["stages"]["clahe"]["params"]["params.yaml"]["clahe"] == params["clahe"]
