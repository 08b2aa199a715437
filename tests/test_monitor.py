"""One drift check from paths: folders of images, prediction logs and saved tables."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from braintumor.imaging import decode_image
from braintumor.monitoring.features import image_features, list_images
from braintumor.monitoring.monitor import (
    load_features,
    monitor,
    outcome_markdown,
    source_kind,
)
from braintumor.monitoring.prediction_log import (
    append_prediction_log,
    prediction_record,
)


@pytest.fixture(scope="module")
def dark_folder(sample_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample's training images, 40% as bright and half the size, as new PNG files."""
    out = tmp_path_factory.mktemp("dark")
    for path in list_images(sample_dir / "Training"):
        if path.name.startswith("planted_"):
            continue
        gray = decode_image(path.read_bytes()).pixels
        small = cv2.resize((gray * 0.4).astype(np.uint8), (gray.shape[1] // 2, gray.shape[0] // 2))
        cv2.imwrite(str(out / f"{path.parent.name}-{path.stem}.png"), small)
    (out / "broken.png").write_bytes(b"\x89PNG not really")
    return out


def test_source_kinds(tmp_path: Path, sample_dir: Path):
    assert source_kind(sample_dir / "Training") == "images"
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "predictions-2026-11-20.jsonl").write_text("")
    assert source_kind(tmp_path / "logs") == "log"
    assert source_kind(tmp_path / "logs" / "predictions-2026-11-20.jsonl") == "log"
    (tmp_path / "t.csv").write_text("a\n1\n")
    assert source_kind(tmp_path / "t.csv") == "table"
    (tmp_path / "x.txt").write_text("")
    with pytest.raises(ValueError, match="expected a folder of images"):
        source_kind(tmp_path / "x.txt")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        source_kind(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no image files"):
        load_features(tmp_path / "empty")


def test_monitor_folders_writes_the_report_and_a_summary(
    sample_dir: Path, dark_folder: Path, tmp_path: Path
):
    out = tmp_path / "reports" / "drift.html"
    outcome = monitor(sample_dir / "Training", dark_folder, out_html=out)
    assert outcome.result.drifted
    assert outcome.html_path == out and out.stat().st_size > 100_000
    assert len(outcome.reference.skipped) == 4
    assert [s.reason for s in outcome.current.skipped] == ["not_an_image"]
    text = outcome_markdown(outcome)
    assert text.startswith("## Drift check: **DRIFT DETECTED**")
    assert "| width | ks |" in text and "broken.png" in text
    assert "25 images from" in text


def test_a_saved_reference_table_gives_the_same_verdict(sample_dir: Path, tmp_path: Path):
    reference = load_features(sample_dir / "Training")
    table = tmp_path / "reference_features.csv"
    reference.frame.to_csv(table, index=False)
    from_table = load_features(table)
    assert from_table.kind == "table" and len(from_table.frame) == 25
    outcome = monitor(table, sample_dir / "Training")
    assert not outcome.result.drifted and outcome.result.share_drifted == 0.0


def test_a_prediction_log_of_the_same_images_does_not_drift(sample_dir: Path, tmp_path: Path):
    log = tmp_path / "logs" / "predictions-2026-11-20.jsonl"
    for i, path in enumerate(list_images(sample_dir / "Training")):
        if path.name.startswith("planted_"):
            continue
        gray = decode_image(path.read_bytes()).pixels
        probs = np.roll([0.85, 0.05, 0.05, 0.05], i % 4)
        append_prediction_log(
            log, prediction_record(probs, model_version=1, features=image_features(gray))
        )
    with log.open("a") as handle:
        handle.write("garbage\n")
    current = load_features(log.parent)
    assert current.kind == "log" and len(current.frame) == 25 and current.skipped_lines == 1
    outcome = monitor(sample_dir / "Training", current)
    assert not outcome.result.drifted
    # The reference has no predictions: only the image features are compared.
    assert "confidence" not in outcome.result.per_column
    assert "1 malformed log line(s) skipped" in outcome_markdown(outcome)


def test_unreadable_reference_images_are_reported_not_fatal(sample_dir: Path, tmp_path: Path):
    folder = tmp_path / "ref"
    shutil.copytree(sample_dir / "Training", folder)
    source = load_features(folder)
    assert len(source.frame) == 25
    assert sorted(Path(s.image).name for s in source.skipped) == [
        "planted_not_an_image.jpg",
        "planted_truncated.jpg",
        "planted_undecodable.jpg",
        "planted_zero_bytes.jpg",
    ]
