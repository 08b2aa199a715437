"""The appearance shortcut check: planted and absent sequence shortcuts on synthetic heads,
edge cases of the features, and the `appearance_shortcut` section of a real audit."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pandas as pd
import pytest

from braintumor.data.ingest import ingest
from braintumor.integrity.appearance import (
    APPEARANCE_FEATURES,
    T1_LIKE,
    T2_LIKE,
    appearance_features,
    appearance_shortcut,
    appearance_table,
    head_mask,
    sequence_group,
)
from braintumor.integrity.audit import run_audit
from braintumor.integrity.policy import IntegrityPolicy

N_PER_CLASS = 40


def synthetic_head(rng: np.random.Generator, sequence: str, size: int = 256) -> np.ndarray:
    """An axial "slice": scalp ring, dark skull, brain and two ventricles on black.

    t1: fat brightest, grey brain, dark ventricles (the contrast-enhanced T1 look).
    t2: fat grey, darker brain, ventricles and sulci brighter than fat (the T2 look).
    """
    image = np.zeros((size, size), np.float32)
    centre = (size // 2 + int(rng.integers(-8, 9)), size // 2 + int(rng.integers(-8, 9)))
    axes = (int(size * rng.uniform(0.36, 0.42)), int(size * rng.uniform(0.40, 0.46)))
    angle = float(rng.uniform(-10, 10))
    fat, skull, brain, csf = (235, 15, 120, 40) if sequence == "t1" else (140, 15, 80, 230)

    def shrink(axes: tuple[int, int], k: float) -> tuple[int, int]:
        return int(axes[0] * k), int(axes[1] * k)

    cv2.ellipse(image, centre, axes, angle, 0, 360, fat, -1)
    cv2.ellipse(image, centre, shrink(axes, 0.92), angle, 0, 360, skull, -1)
    cv2.ellipse(image, centre, shrink(axes, 0.86), angle, 0, 360, brain, -1)
    offset = int(axes[0] * rng.uniform(0.2, 0.25))
    ventricle = (int(axes[0] * rng.uniform(0.09, 0.12)), int(axes[1] * rng.uniform(0.28, 0.34)))
    for side in (-1, 1):
        cv2.ellipse(
            image, (centre[0] + side * offset, centre[1]), ventricle, angle, 0, 360, csf, -1
        )
    for _ in range(int(rng.integers(4, 8))):  # sulci: small CSF spots in the brain
        r, t = rng.uniform(0.35, 0.7), rng.uniform(0, 2 * np.pi)
        spot = (int(centre[0] + r * axes[0] * np.cos(t)), int(centre[1] + r * axes[1] * np.sin(t)))
        cv2.circle(image, spot, int(rng.integers(3, 6)), csf, -1)
    image = cv2.GaussianBlur(image, (5, 5), 1.2) + rng.normal(0, 6, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def synthetic_set(planted: bool, seed: int = 0) -> tuple[list[np.ndarray], list[str]]:
    """notumor and glioma images: planted, all notumor T2 and all glioma T1; else half each."""
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for label in ("notumor", "glioma"):
        for k in range(N_PER_CLASS):
            if planted:
                sequence = "t2" if label == "notumor" else "t1"
            else:
                sequence = "t2" if k % 2 == 0 else "t1"
            images.append(synthetic_head(rng, sequence))
            labels.append(label)
    return images, labels


def test_the_sequence_rule_tells_synthetic_t2_from_t1():
    rng = np.random.default_rng(1)
    t1 = appearance_table([synthetic_head(rng, "t1") for _ in range(10)])
    t2 = appearance_table([synthetic_head(rng, "t2") for _ in range(10)])
    assert (sequence_group(t1) == T1_LIKE).all()
    assert (sequence_group(t2) == T2_LIKE).all()
    # the features behind the rule, as the module documents them
    assert (t2["csf_bright_share"] > 0.08).all() and (t1["csf_bright_share"] < 0.02).all()
    assert (t2["bright_spread"] >= 0.3).all()


def test_planted_appearance_shortcut_is_flagged_with_the_share():
    images, labels = synthetic_set(planted=True)
    features = appearance_table(images)
    result = appearance_shortcut(features, labels, ["training"] * len(labels))
    assert result["shortcut"] and result["group_shortcut"] and result["probe"]["shortcut"]
    assert result["t2_like_images"] == N_PER_CLASS
    assert result["t2_like_notumor_share"] == 1.0 and result["notumor_base_share"] == 0.5
    assert result["probe"]["balanced_accuracy"] >= 0.95
    assert result["probe"]["notumor_vs_tumour"] >= 0.95
    training = result["groups"]["training"]
    assert training["by_group"][T2_LIKE]["counts"] == {"notumor": N_PER_CLASS}
    assert training["by_class"]["glioma"][T1_LIKE] == 1.0
    assert result["summary"].startswith(
        f"SHORTCUT: 100% of T2-like training images ({N_PER_CLASS}) are labelled no tumour"
    )
    assert (
        f"balanced accuracy {result['probe']['balanced_accuracy']:.2f} (chance 0.50)"
        in (result["summary"])
    )
    json.dumps(result)  # plain values only: it goes into audit.json as is


def test_absent_appearance_shortcut_is_not_flagged():
    images, labels = synthetic_set(planted=False)
    result = appearance_shortcut(appearance_table(images), labels, ["training"] * len(labels))
    assert not result["shortcut"] and not result["group_shortcut"]
    assert not result["probe"]["shortcut"]
    assert result["t2_like_notumor_share"] == pytest.approx(0.5, abs=0.05)
    # near chance: the appearance carries no label information here
    assert abs(result["probe"]["balanced_accuracy"] - result["probe"]["chance"]) < 0.2
    by_group = result["groups"]["training"]["by_group"]
    assert by_group[T2_LIKE]["counts"] == {"glioma": 20, "notumor": 20}
    assert result["summary"].startswith("Image appearance does not predict the label")
    assert "50% of T2-like training images (40) are labelled no tumour" in result["summary"]


def test_the_warning_speaks_of_training_images_only():
    """Testing images do not count towards the warning or the probe; they get their own table."""
    images, labels = synthetic_set(planted=False)
    extra, extra_labels = synthetic_set(planted=True, seed=3)
    features = appearance_table(images + extra)
    splits = ["training"] * len(images) + ["testing"] * len(extra)
    result = appearance_shortcut(features, labels + extra_labels, splits)
    assert result["scope"] == "training" and result["probe"]["images"] == len(images)
    assert result["images_used"] == f"{len(images)} images of source split training"
    assert not result["group_shortcut"]
    testing = result["groups"]["testing"]["by_group"][T2_LIKE]
    assert testing["share_by_label"] == {"notumor": 1.0}
    # without a training split, all images are used and the sentence says images
    unsplit = appearance_shortcut(features, labels + extra_labels, None)
    assert unsplit["scope"] == "all" and "training" not in unsplit["summary"]


def test_features_survive_blank_and_flat_images():
    for image in (np.zeros((64, 64), np.uint8), np.full((40, 90), 200, np.uint8)):
        features = appearance_features(image)
        assert list(features) == list(APPEARANCE_FEATURES)
        assert all(np.isfinite(v) for v in features.values())
    assert head_mask(np.zeros((32, 32), np.uint8)).all()  # nothing stands out: whole image


def test_head_mask_keeps_dark_csf_inside_the_head():
    image = synthetic_head(np.random.default_rng(2), "t1")
    mask = head_mask(cv2.resize(image, (128, 128), interpolation=cv2.INTER_AREA))
    assert mask[64, 64 - 8 : 64 + 8].all()  # ventricles are dark but inside the head
    assert not mask[0, 0] and not mask[127, 127]
    assert 0.3 < mask.mean() < 0.7


@pytest.fixture(scope="module")
def sample_audit_figures(sample_dir, tmp_path_factory):
    ingested = ingest(sample_dir, out_dir=tmp_path_factory.mktemp("ingested") / "raw")
    result = run_audit(
        ingested.out_dir, ingested.manifest, IntegrityPolicy(), tmp_path_factory.mktemp("audit")
    )
    return ingested, result


def test_audit_json_and_report_hold_the_appearance_section(sample_audit_figures):
    ingested, result = sample_audit_figures
    figures = json.loads(result.audit_json.read_text())
    section = figures["appearance_shortcut"]
    training = ingested.manifest[ingested.manifest["split"] == "training"]
    assert section["scope"] == "training" and section["probe"]["images"] == len(training)
    assert section["images_used"] == f"{len(training)} images of source split training"
    by_group = section["groups"]["training"]["by_group"]
    assert sum(info["images"] for info in by_group.values()) == len(training)
    counted = pd.Series(
        {
            label: sum(info["counts"].get(label, 0) for info in by_group.values())
            for label in training["label"].unique()
        }
    )
    assert counted.sort_index().to_dict() == training["label"].value_counts().sort_index().to_dict()
    assert set(section["groups"]) == {"training", "testing"}
    assert isinstance(section["shortcut"], bool) and section["summary"]
    assert "appearance_s" in figures["timings"]
    text = result.report_html.read_text()
    assert "<h2>Appearance shortcut</h2>" in text
    assert section["summary"].split(":")[0] in text
    assert "Appearance-only probe" in text and "KMeans clusters of head histograms" in text


def test_data_audit_command_prints_the_appearance_line(sample_audit_figures, tmp_path):
    from typer.testing import CliRunner

    from braintumor.cli import app

    ingested, _ = sample_audit_figures
    params = tmp_path / "params.yaml"
    params.write_text("integrity:\n  seed: 42\n")
    command = ["data", "audit", "--data", str(ingested.out_dir), "--params", str(params)]
    result = CliRunner().invoke(app, [*command, "--out", str(tmp_path / "a"), "--no-html"])
    assert result.exit_code == 0, result.output
    printed = " ".join(result.output.split())  # Rich wraps long lines at the terminal width
    assert "appearance check: " in printed
    figures = json.loads((tmp_path / "a" / "audit.json").read_text())
    assert figures["appearance_shortcut"]["summary"].split(";")[0] in printed


@pytest.mark.slow
@pytest.mark.full_data
def test_full_kaggle_training_set_shows_the_t2_shortcut(full_dataset_dir):
    """The measured figures of issue 15 on the full set, read in place (about 30 s)."""
    from braintumor.constants import CLASS_ALIASES
    from braintumor.integrity.appearance import load_appearance

    files = sorted(
        path.relative_to(full_dataset_dir)
        for path in (full_dataset_dir / "Training").glob("*/*")
        if path.suffix.lower() in {".jpg", ".jpeg", ".png"}
    )
    labels = [CLASS_ALIASES[path.parts[1].lower()] for path in files]
    features = load_appearance(full_dataset_dir, [str(path) for path in files])
    result = appearance_shortcut(features, labels, ["training"] * len(files))
    assert result["probe"]["images"] == len(files) > 2800
    assert result["shortcut"] and result["group_shortcut"]
    # 80 of the 117 T2-like Training images are no tumour, against 14% of all of them
    assert result["t2_like_images"] >= 80 and result["t2_like_notumor_share"] >= 0.6
    assert result["notumor_base_share"] == pytest.approx(0.138, abs=0.01)
    assert result["probe"]["notumor_vs_tumour"] >= 0.8
    assert result["groups"]["training"]["by_class"]["glioma"][T1_LIKE] >= 0.95
