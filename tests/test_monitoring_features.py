"""Drift features: each one moves the way its name says, on synthetic and real slices."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from braintumor.imaging import ImageDecodeError
from braintumor.monitoring.features import (
    ANALYSIS_SPEC,
    CONFIDENCE,
    IMAGE_COLUMN,
    IMAGE_FEATURES,
    PREDICTED_LABEL,
    feature_table,
    image_features,
    list_images,
    prediction_features,
    split_constant_columns,
)
from braintumor.preprocessing import preprocess_gray


def phantom(size: int = 256, level: int = 120, radius: float = 0.35, seed: int = 0) -> np.ndarray:
    """A head-like disc with texture on a black background."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    disc = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 <= (radius * size) ** 2
    texture = rng.normal(0, 25, (size, size))
    image = np.where(disc, level + texture, 0)
    return np.clip(image, 0, 255).astype(np.uint8)


def test_brighter_image_has_higher_intensity_features():
    dark, bright = image_features(phantom(level=80)), image_features(phantom(level=160))
    assert bright["intensity_mean"] > dark["intensity_mean"] + 20
    assert bright["head_intensity_mean"] > dark["head_intensity_mean"] + 60
    assert bright["intensity_p95"] > dark["intensity_p95"]


def test_blurred_image_is_less_sharp():
    sharp = phantom()
    blurred = cv2.GaussianBlur(sharp, (0, 0), sigmaX=3)
    assert image_features(blurred)["sharpness"] < 0.2 * image_features(sharp)["sharpness"]


def test_head_fraction_matches_the_disc_area():
    features = image_features(phantom(size=512, level=150, radius=0.3))
    assert features["head_fraction"] == pytest.approx(math.pi * 0.3**2, abs=0.01)
    assert features["head_box_fraction"] == pytest.approx(0.6**2, abs=0.01)


def test_geometry_comes_from_the_original_and_intensity_does_not_depend_on_resolution():
    big = phantom(size=512)
    small = cv2.resize(big, (256, 256), interpolation=cv2.INTER_AREA)
    wide = np.zeros((200, 300), dtype=np.uint8)
    features = image_features(wide)
    assert (features["width"], features["height"], features["aspect_ratio"]) == (300, 200, 1.5)
    f_big, f_small = image_features(big), image_features(small)
    assert (f_big["width"], f_small["width"]) == (512, 256)
    assert f_small["intensity_mean"] == pytest.approx(f_big["intensity_mean"], rel=0.02)


def test_entropy_and_percentiles_are_exact():
    flat = np.full((64, 64), 90, dtype=np.uint8)
    assert image_features(flat)["entropy"] == 0.0
    halves = np.zeros((256, 256), dtype=np.uint8)
    halves[:, 128:] = 200
    assert image_features(halves)["entropy"] == pytest.approx(1.0, abs=1e-3)
    gray = phantom(size=300, seed=3)
    view = preprocess_gray(gray, ANALYSIS_SPEC)
    features = image_features(gray)
    for q in (5, 25, 50, 75, 95):
        expected = np.percentile(view, q, method="inverted_cdf")
        assert features[f"intensity_p{q:02d}"] == expected
    assert features["intensity_std"] == pytest.approx(view.std(), rel=1e-9)


def test_image_features_rejects_non_grayscale_input():
    with pytest.raises(ValueError, match="uint8 grayscale"):
        image_features(np.zeros((8, 8, 3), dtype=np.uint8))


def test_prediction_features():
    assert prediction_features([0.1, 0.6, 0.2, 0.1]) == {
        PREDICTED_LABEL: "meningioma",
        CONFIDENCE: 0.6,
    }
    assert prediction_features({"a": 0.2, "b": 0.8})[PREDICTED_LABEL] == "b"
    with pytest.raises(ValueError, match="3 probabilities for 4 classes"):
        prediction_features([0.2, 0.3, 0.5])


def test_feature_table_on_the_sample_skips_the_planted_files(sample_dir: Path):
    images = list_images(sample_dir / "Training")
    skipped = []
    frame = feature_table(images, skipped=skipped, workers=2)
    assert len(frame) == 25 and len(skipped) == 4
    assert all(Path(s.image).name.startswith("planted_") for s in skipped)
    assert {s.reason for s in skipped} == {
        "empty_file",
        "truncated",
        "not_an_image",
        "undecodable",
    }
    assert list(frame.columns) == [IMAGE_COLUMN, *IMAGE_FEATURES]
    assert frame[list(IMAGE_FEATURES)].notna().all().all()
    assert not frame[IMAGE_COLUMN].str.contains("planted_").any()
    # Kaggle training slices: mostly 512x512, head fills about half the frame.
    assert frame["width"].median() == 512
    assert 0.2 < frame["head_fraction"].median() < 0.9


def test_feature_table_raises_with_the_file_name_without_a_skipped_list(sample_dir: Path):
    bad = sample_dir / "Training" / "glioma_tumor" / "planted_zero_bytes.jpg"
    with pytest.raises(ImageDecodeError, match=r"planted_zero_bytes\.jpg"):
        feature_table([bad])


def test_feature_table_with_arrays_and_predictions():
    images = [phantom(level=level) for level in (60, 120, 180)]
    probs = np.array([[0.7, 0.1, 0.1, 0.1], [0.1, 0.1, 0.1, 0.7], [0.25, 0.25, 0.3, 0.2]])
    frame = feature_table(images, probs)
    assert list(frame[IMAGE_COLUMN]) == ["array[0]", "array[1]", "array[2]"]
    assert list(frame[PREDICTED_LABEL]) == ["glioma", "pituitary", "notumor"]
    assert list(frame[CONFIDENCE]) == [0.7, 0.7, 0.3]
    assert frame["intensity_mean"].is_monotonic_increasing
    with pytest.raises(ValueError, match="predictions must be"):
        feature_table(images, probs[:2])


def test_list_images_skips_hidden_system_and_non_image_files(tmp_path: Path):
    for name in ("a.jpg", "sub/b.png", ".hidden.jpg", ".git/c.jpg", "Thumbs.db", "notes.csv"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    assert [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path)] == [
        "a.jpg",
        "sub/b.png",
    ]
    with pytest.raises(FileNotFoundError, match="not a folder"):
        list_images(tmp_path / "missing")


def test_split_constant_columns_keeps_columns_constant_on_one_side_only():
    reference = pd.DataFrame({"same": [1.0] * 4, "moved": [512.0] * 4, "varies": [1, 2, 3, 4]})
    current = pd.DataFrame({"same": [1.0] * 3, "moved": [256.0] * 3, "varies": [1, 1, 1]})
    keep, constant = split_constant_columns(reference, current)
    assert keep == ["moved", "varies"] and constant == ["same"]
