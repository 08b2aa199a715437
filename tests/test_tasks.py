"""The binary task: four labels mapped to tumour / no tumour in one place, the same splits,
the setting declared once (`training.task`), and the binary profile is the cpu profile."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from braintumor.constants import BINARY_CLASS_NAMES, CLASS_ALIASES, CLASS_NAMES
from braintumor.run_config import RunConfig
from braintumor.tasks import (
    TaskError,
    binary_label,
    binary_probs,
    common_view,
    task_class_names,
    task_labels,
    task_of,
    tumour_probability,
)
from braintumor.training.config import TrainingConfig
from braintumor.training.dataset import DatasetError, label_indices, load_split_arrays
from tests.training_helpers import sample_splits

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
_NO_TUMOUR_ALIASES = {k for k, v in CLASS_ALIASES.items() if v == "notumor"}


def test_every_tumour_class_maps_to_tumour_and_notumor_stays() -> None:
    assert BINARY_CLASS_NAMES == ("notumor", "tumour")
    assert {name: binary_label(name) for name in CLASS_NAMES} == {
        "glioma": "tumour",
        "meningioma": "tumour",
        "notumor": "notumor",
        "pituitary": "tumour",
    }
    # Every folder alias lands on the same side as its canonical class.
    for alias, canonical in CLASS_ALIASES.items():
        assert binary_label(canonical) == ("notumor" if alias in _NO_TUMOUR_ALIASES else "tumour")
    assert binary_label("tumour") == "tumour"  # already binary
    with pytest.raises(TaskError, match="unknown class 'astrocytoma'"):
        binary_label("astrocytoma")  # never silently a tumour


def test_tasks_name_their_classes_and_back() -> None:
    assert task_class_names("four_class") == CLASS_NAMES
    assert task_class_names("binary") == BINARY_CLASS_NAMES
    assert task_of(CLASS_NAMES) == "four_class" and task_of(list(BINARY_CLASS_NAMES)) == "binary"
    with pytest.raises(TaskError, match="unknown task 'three_class'"):
        task_class_names("three_class")
    with pytest.raises(TaskError, match="neither the four classes"):
        task_of(("tumour", "notumor"))  # the order is the softmax's: it matters


def test_label_indices_map_data_labels_to_the_models_classes() -> None:
    labels = ["glioma", "notumor", "pituitary", "meningioma"]
    assert label_indices(labels).tolist() == [0, 2, 3, 1]
    assert label_indices(labels, BINARY_CLASS_NAMES).tolist() == [1, 0, 1, 1]
    assert task_labels(labels, CLASS_NAMES) == labels
    with pytest.raises(DatasetError, match="unknown class 'other'"):
        label_indices(["glioma", "other"], BINARY_CLASS_NAMES)


def test_binary_training_uses_the_same_split_rows(sample_dir: Path) -> None:
    from braintumor.preprocessing import PreprocessSpec

    splits = sample_splits(sample_dir)
    spec = PreprocessSpec(image_size=32, channels=3)
    four = load_split_arrays(splits, sample_dir, spec)
    two = load_split_arrays(splits, sample_dir, spec, class_names=BINARY_CLASS_NAMES)
    assert two.class_names == BINARY_CLASS_NAMES
    for a, b in ((four.train, two.train), (four.val, two.val)):
        assert a.paths == b.paths  # same images, same order: only the targets differ
        np.testing.assert_array_equal(a.x, b.x)
        np.testing.assert_array_equal(b.y, (a.y != CLASS_NAMES.index("notumor")).astype(int))
    assert set(two.train.y.tolist()) == {0, 1}


def test_binary_view_of_probabilities() -> None:
    four = np.array([[0.1, 0.2, 0.6, 0.1], [0.7, 0.1, 0.1, 0.1]])
    np.testing.assert_allclose(tumour_probability(four, CLASS_NAMES), [0.4, 0.9])
    np.testing.assert_allclose(binary_probs(four, CLASS_NAMES), [[0.6, 0.4], [0.1, 0.9]])
    two = np.array([[0.3, 0.7]])
    np.testing.assert_allclose(binary_probs(two, BINARY_CLASS_NAMES), two)
    a, b, names = common_view(four, CLASS_NAMES, four[::-1], CLASS_NAMES)
    assert names == CLASS_NAMES and a.shape == b.shape == (2, 4)  # same classes: unchanged
    a, b, names = common_view(two, BINARY_CLASS_NAMES, four[:1], CLASS_NAMES)
    assert names == BINARY_CLASS_NAMES
    np.testing.assert_allclose(b, [[0.6, 0.4]])
    with pytest.raises(TaskError, match="no 'notumor'"):
        tumour_probability(np.eye(3), ("a", "b", "c"))


def test_task_is_declared_once_under_training() -> None:
    four = TrainingConfig()
    assert four.task == "four_class" and four.class_names == CLASS_NAMES
    # The default stays out of the dump: the profiles' train steps keep their cache keys.
    assert "task" not in four.model_dump(mode="json")
    binary = TrainingConfig(task="binary")
    assert binary.model_dump(mode="json")["task"] == "binary"
    assert TrainingConfig(**binary.model_dump(mode="json")) == binary
    run = RunConfig(backbones=["custom_cnn", "mobilenetv2"], training={"task": "binary"})
    assert run.task == "binary" and run.class_names == BINARY_CLASS_NAMES
    assert {run.training_config(b).task for b in run.backbones} == {"binary"}
    with pytest.raises(ValueError, match="not per backbone"):
        RunConfig(backbones=["custom_cnn"], overrides={"custom_cnn": {"task": "binary"}})
    with pytest.raises(ValueError, match="'four_class' or 'binary'"):
        RunConfig(backbones=["custom_cnn"], training={"task": "tumour"})


def test_binary_profile_is_the_cpu_profile_with_task_binary() -> None:
    def run_block(name: str) -> dict:
        return yaml.safe_load((CONFIGS / name).read_text())["parameters"]["run"]

    binary, cpu = run_block("binary.yaml"), run_block("cpu.yaml")
    assert binary["training"].pop("task") == "binary"
    assert binary == cpu
    assert RunConfig(**run_block("binary.yaml")).class_names == BINARY_CLASS_NAMES
