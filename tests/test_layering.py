"""The layers hold: the library (`src/braintumor/`) imports neither ZenML nor anything that
wraps it, `steps/` holds steps and `pipelines/` pipelines, and `braintumor_zenml` holds the
rest of the ZenML-facing code, the `braintumor` console script included."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LIBRARY = REPO / "src" / "braintumor"
# What the library must not import: ZenML, and the packages that wrap the library with it.
FORBIDDEN = {"zenml", "pipelines", "steps", "braintumor_zenml"}
COMMANDS = ["train", "tune", "cv", "monitor", "promote", "rollback", "package", "data"]


def imported_modules(source: str) -> list[tuple[int, str]]:
    """Every module `source` imports, anywhere (module level, functions, `if` blocks), with
    its line: `import x.y`, `from x.y import z` and `importlib.import_module("x.y")`."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute | ast.Name)
            and (getattr(node.func, "attr", None) or getattr(node.func, "id", None))
            in ("import_module", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.append((node.lineno, node.args[0].value))
    return found


def forbidden_imports(path: Path) -> list[str]:
    return [
        f"{path.relative_to(REPO)}:{line} imports {module}"
        for line, module in imported_modules(path.read_text())
        if module.split(".")[0] in FORBIDDEN
    ]


def test_the_check_sees_imports_wherever_they_are() -> None:
    source = (
        "import os\n"
        "from braintumor.constants import MODEL_NAME\n"
        "from . import sibling\n"
        "def run():\n"
        "    from zenml.client import Client\n"
        "    if True:\n"
        "        import pipelines.training\n"
        "    importlib.import_module('braintumor_zenml.launch')\n"
        "class A:\n"
        "    def f(self):\n"
        "        __import__('steps.gate')\n"
    )
    modules = [module for _, module in imported_modules(source)]
    assert modules.count("os") == 1 and "braintumor.constants" in modules
    forbidden = [m for m in modules if m.split(".")[0] in FORBIDDEN]
    assert sorted(forbidden) == [
        "braintumor_zenml.launch",
        "pipelines.training",
        "steps.gate",
        "zenml.client",
    ]


def test_the_library_imports_no_zenml_steps_or_pipelines() -> None:
    files = sorted(LIBRARY.rglob("*.py"))
    assert len(files) > 40 and LIBRARY / "cli.py" in files
    violations = [line for path in files for line in forbidden_imports(path)]
    assert violations == []


def _decorated_with(path: Path, decorator: str) -> list[str]:
    """Top-level functions of `path` decorated with `@decorator` or `@decorator(...)`."""
    names = []
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.FunctionDef):
            for item in node.decorator_list:
                target = item.func if isinstance(item, ast.Call) else item
                if isinstance(target, ast.Name) and target.id == decorator:
                    names.append(node.name)
    return names


# steps/materializers.py is the old import path of the materializers, which artifacts of
# earlier ZenML stores name (tests/test_materializer_alias.py).
NOT_STEPS = ("__init__.py", "materializers.py")


@pytest.mark.parametrize(("folder", "decorator"), [("steps", "step"), ("pipelines", "pipeline")])
def test_steps_hold_steps_and_pipelines_hold_pipelines(folder: str, decorator: str) -> None:
    modules = sorted(p for p in (REPO / folder).glob("*.py") if p.name not in NOT_STEPS)
    assert len(modules) >= 4
    without = [p.name for p in modules if not _decorated_with(p, decorator)]
    assert without == [], f"{folder}/ modules that define no @{decorator}"


def test_the_console_script_is_the_zenml_facing_app_with_every_command() -> None:
    import typer

    from braintumor_zenml.cli import app

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["scripts"] == {"braintumor": "braintumor_zenml.cli:app"}
    assert list(typer.main.get_command(app).commands) == COMMANDS


def test_the_library_cli_alone_has_the_data_commands_and_loads_no_zenml() -> None:
    code = (
        "import sys, typer\n"
        "from braintumor.cli import app\n"
        "print(list(typer.main.get_command(app).commands))\n"
        "print(sorted(m for m in ('zenml', 'braintumor_zenml', 'pipelines', 'steps')"
        " if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": f"{REPO / 'src'}:{REPO}"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    commands, loaded = done.stdout.strip().splitlines()[-2:]
    assert commands == "['data']"
    assert loaded == "[]"


def test_zenml_records_this_packages_classes_by_their_import_path() -> None:
    """Under the repository root (ZenML's source root) these classes would be recorded as
    `src.braintumor_zenml...`, which loads a second copy of their module."""
    from zenml.utils import source_utils

    from braintumor.guard.ood import OodDetector
    from braintumor_zenml import materializers

    source_utils.set_custom_source_root(str(REPO))
    try:
        _check_recorded_by_import_path(source_utils, OodDetector, materializers)
    finally:
        source_utils.set_custom_source_root(None)


def _check_recorded_by_import_path(source_utils, OodDetector, materializers) -> None:
    assert source_utils.resolve(OodDetector).module == "src.braintumor.guard.ood"  # unpinned
    classes = [
        materializers.ImageFolder,
        materializers.ImageFolderMaterializer,
        materializers.KerasModelMaterializer,
        materializers.OodDetectorMaterializer,
    ]
    try:
        from braintumor_zenml.kubeflow_flavor import ResourceKubeflowOrchestratorFlavor
    except ImportError:  # the `kubeflow` extra is not installed
        pass
    else:
        classes.append(ResourceKubeflowOrchestratorFlavor)
    for cls in classes:
        source = source_utils.resolve(cls)
        assert source.import_path == f"{cls.__module__}.{cls.__name__}"
        assert cls.__module__.startswith("braintumor_zenml.")
        assert source_utils.load(source) is cls
