"""Artifact names are a contract between the step that writes an artifact and whoever looks it
up (launch, operations, registry, reports): each is a constant of `braintumor.constants`,
named on the producing side by that constant, and no constant is left unused."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import braintumor.constants as constants

ROOT = Path(__file__).resolve().parents[1]
STEPS = sorted((ROOT / "steps").glob("*.py"))


def _output_names(tree: ast.AST) -> list[ast.expr]:
    """The name expressions of every `Annotated[T, name]` and `ArtifactConfig(name=...)`."""
    names = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Subscript)
            and isinstance(node.value, ast.Name)
            and node.value.id == "Annotated"
        ):
            label = node.slice.elts[1]  # type: ignore[attr-defined]
            if isinstance(label, ast.Call):
                label = next(k.value for k in label.keywords if k.arg == "name")
            names.append(label)
    return names


def test_every_step_output_is_named_by_a_constant() -> None:
    literal = []
    for path in STEPS:
        for name in _output_names(ast.parse(path.read_text())):
            if not (isinstance(name, ast.Name) and name.id.startswith("ARTIFACT_")):
                literal.append(f"{path.name}:{name.lineno}: {ast.unparse(name)}")
            else:
                assert hasattr(constants, name.id), f"{path.name}: no constant {name.id}"
    assert not literal, "artifact names written as literals, not constants: " + ", ".join(literal)


def test_the_checker_sees_a_literal_name() -> None:
    tree = ast.parse('def f() -> Annotated[dict, "x"]: ...')
    assert [ast.unparse(n) for n in _output_names(tree)] == ["'x'"]


def test_every_artifact_constant_is_used() -> None:
    code = "\n".join(
        path.read_text()
        for folder in ("steps", "pipelines", "src/braintumor_zenml", "src/braintumor")
        for path in (ROOT / folder).rglob("*.py")
        if path.name != "constants.py"
    )
    used = set(re.findall(r"\bARTIFACT_[A-Z_]+\b", code))
    unused = [name for name in vars(constants) if name.startswith("ARTIFACT_") and name not in used]
    assert not unused, f"artifact-name constants nobody uses: {unused}"
