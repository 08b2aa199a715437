"""The quality benchmark script runs end to end on the sample and writes its figures."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest

from tests.training_helpers import sample_splits_with_test

BINARY = Path(__file__).resolve().parents[1] / "configs" / "binary.yaml"


@pytest.mark.slow
def test_quality_benchmark_writes_every_figure_per_protocol(
    sample_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from benchmarks.quality import main

    table = sample_splits_with_test(sample_dir, tmp_path / "splits.csv")
    out = tmp_path / "quality.json"
    code = main(
        [
            "--data-root", str(sample_dir),
            "--splits-resplit", str(table),
            "--out", str(out),
            "--save-models", str(tmp_path / "models"),
            "--set", 'preprocessing={"image_size": 32, "channels": 1}',
            "--set", "epochs=1",
            "--set", "cnn.filters=[8, 16]",
            "--set", "augmentation.enabled=false",
        ]
    )  # fmt: skip
    assert code == 0
    report = json.loads(out.read_text())
    assert report["config"]["epochs"] == 1 and report["config"]["cnn"]["filters"] == [8, 16]
    assert report["machine"]["cpu_cores"] >= 1 and report["git_commit"]
    assert report["command"].startswith("python benchmarks/quality.py --data-root")
    assert report["measured_at"]
    result = report["protocols"]["resplit"]
    assert result["protocol"] == "resplit"
    assert 0 <= result["weighted_f1"] <= 1
    low, high = result["weighted_f1_ci95"]
    assert low <= result["weighted_f1"] <= high
    assert set(result["per_class_recall"]) == {"glioma", "meningioma", "notumor", "pituitary"}
    assert result["training_seconds"] > 0 and result["epochs_run"] == 1
    assert result["test_images"] == (pd.read_csv(table).split == "test").sum()
    assert result["kept_images"]["train"]["glioma"] == 6
    validation = result["validation"]  # what a recipe is chosen on
    val_images = int((pd.read_csv(table).split == "val").sum())
    assert validation["images"] == val_images and 0 <= validation["weighted_f1"] <= 1
    groups = validation["per_appearance_group"]
    assert sum(g["images"] for g in groups.values()) == val_images
    assert all(g["tumour_images"] + g["notumor_images"] == g["images"] for g in groups.values())
    assert (tmp_path / "quality_resplit_test_probs.npy").is_file()
    saved = keras.saving.load_model(tmp_path / "models" / "quality_resplit.keras")
    assert saved.input_shape == (None, 32, 32, 1)

    # Scoring the saved model instead of training gives the same figures, marked as scored.
    scored_out = tmp_path / "scored.json"
    held_out = tmp_path / "held_out.csv"
    frame = pd.read_csv(table)
    frame.assign(source=frame["split"].map({"test": "elsewhere"}).fillna("kaggle")).to_csv(
        held_out, index=False
    )
    code = main(
        [
            "--data-root", str(sample_dir),
            "--splits-resplit", str(table),
            "--out", str(scored_out),
            "--splits-leave-source-out", str(held_out),
            "--score-model", str(tmp_path / "models" / "quality_resplit.keras"),
            "--set", 'preprocessing={"image_size": 32, "channels": 1}',
        ]
    )  # fmt: skip
    assert code == 0
    protocols = json.loads(scored_out.read_text())["protocols"]
    scored = protocols["resplit"]
    # The same table with its test rows from a second source: figures per source.
    by_source = protocols["leave-source-out"]["by_source"]
    assert protocols["leave-source-out"]["test_sources"] == ["elsewhere"] == list(by_source)
    assert by_source["elsewhere"]["weighted_f1"] == scored["weighted_f1"]
    assert (
        scored["scored_model"].endswith("quality_resplit.keras")
        and "training_seconds" not in scored
    )
    assert scored["validation"] == validation
    assert scored["weighted_f1"] == result["weighted_f1"]

    # The binary profile on the same splits, next to the four-class model's binary view.
    binary_out = tmp_path / "quality_binary.json"
    code = main(
        [
            "--data-root", str(sample_dir),
            "--splits-resplit", str(table),
            "--out", str(binary_out),
            "--config", str(BINARY),
            "--compare-with", str(out),
            "--set", 'preprocessing={"image_size": 32, "channels": 1}',
            "--set", "epochs=1",
            "--set", "cnn.filters=[8, 16]",
            "--set", "augmentation.enabled=false",
        ]
    )  # fmt: skip
    assert code == 0
    binary_report = json.loads(binary_out.read_text())
    assert binary_report["task"] == "binary" and binary_report["config"]["task"] == "binary"
    binary = binary_report["protocols"]["resplit"]
    assert binary["class_names"] == ["notumor", "tumour"]
    assert set(binary["per_class_recall"]) == {"notumor", "tumour"}
    assert binary["test_images"] == result["test_images"]  # the same test images
    own = binary["tumour_vs_none"]
    assert own["sensitivity"] == binary["per_class_recall"]["tumour"]
    assert own["specificity"] == binary["per_class_recall"]["notumor"]
    # The four-class model's binary view, from its saved probabilities: P(tumour) > 0.5.
    view = binary["four_class_binary_view"]
    four = result["tumour_vs_none"]
    assert (view["sensitivity"], view["specificity"]) == (four["sensitivity"], four["specificity"])
    probs = np.load(tmp_path / "quality_resplit_test_probs.npy")
    test = pd.read_csv(table).query("split == 'test'").sort_values("path")
    tumour = (test["label"] != "notumor").to_numpy()
    called = 1 - probs[:, 2] > 0.5
    assert view["sensitivity"] == pytest.approx(called[tumour].mean())
    assert view["specificity"] == pytest.approx((~called[~tumour]).mean())
    assert view["tumour_images"] == tumour.sum() and view["notumor_images"] == (~tumour).sum()

    # A four-class report of other splits cannot be compared: one line, before any training.
    other = tmp_path / "other_splits.csv"
    pd.read_csv(table).iloc[:-1].to_csv(other, index=False)
    with pytest.raises(SystemExit) as refused:
        main(["--splits-resplit", str(other), "--config", str(BINARY),
              "--compare-with", str(out), "--out", str(tmp_path / "x.json")])  # fmt: skip
    assert refused.value.code == 2
    assert "made on another splits file" in capsys.readouterr().err


def test_figures_of_another_config_are_not_kept_under_this_one() -> None:
    from benchmarks.quality import kept_protocols

    earlier = {
        "config": {"epochs": 60},
        "git_commit": "abc",
        "started": "2026-11-23T09:00:00+0000",
        "machine": {"cpu": "first"},
        "protocols": {"resplit": {"weighted_f1": 0.9}},
    }
    kept = kept_protocols(earlier, {"epochs": 60})
    assert kept["resplit"]["weighted_f1"] == 0.9
    # Stamped with the run that made them, not with the run that keeps them.
    assert kept["resplit"]["git_commit"] == "abc"
    assert kept["resplit"]["machine"] == {"cpu": "first"}
    assert kept_protocols(earlier, {"epochs": 90}) == {}
    stamped = {**earlier, "protocols": {"resplit": {"git_commit": "def", "machine": {}}}}
    assert kept_protocols(stamped, {"epochs": 60})["resplit"]["git_commit"] == "def"
