"""The guard's parts (`braintumor.guard`): input checks, OOD detectors, conformal sets and
the review rule, each on inputs made to trigger it, and the fit on synthetic embeddings."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from braintumor.guard import input_checks
from braintumor.guard.conformal import crepes_sets, fit_thresholds, prediction_sets
from braintumor.guard.fit import GuardSettings, fit_guard
from braintumor.guard.ood import OodDetector, energy, fit_detector, l2_normalise
from braintumor.guard.review import (
    AMBIGUOUS,
    LOW_CONFIDENCE,
    NOT_BRAIN_MRI,
    OUT_OF_DISTRIBUTION,
    REASONS,
    flag_reasons,
    reasons_of,
)
from braintumor.imaging import decode_image

SAMPLE = Path(__file__).parent / "data" / "sample"


def sample_files() -> list[Path]:
    return [p for p in sorted(SAMPLE.glob("*/*/*.jpg")) if not p.name.startswith("planted_")]


def encoded(array: np.ndarray, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, fmt)
    return buffer.getvalue()


def checks_of(data: bytes) -> list[str]:
    decoded = decode_image(data, measure_colour=True)
    return input_checks.failed_checks(decoded.pixels, decoded.colourfulness)


# --- input checks --------------------------------------------------------------------------


def test_no_shipped_sample_slice_fails_an_input_check():
    files = sample_files()
    assert len(files) == 34
    for path in files:
        assert checks_of(path.read_bytes()) == [], path


def test_each_input_check_fires_on_an_input_made_for_it():
    rng = np.random.default_rng(0)
    flat = np.full((200, 200), 90, np.uint8)
    noise = rng.integers(0, 256, (256, 256), dtype=np.uint8)
    dark = np.zeros((256, 256), np.uint8)
    dark[100:140, 100:150] = 200  # a small bright patch (3%) on black: no head
    assert checks_of(encoded(flat)) == [input_checks.NEARLY_CONSTANT]
    assert checks_of(encoded(noise)) == [input_checks.NOISE]
    assert checks_of(encoded(dark)) == [input_checks.NO_HEAD]


def test_a_colour_photograph_fails_the_colour_check_and_its_grey_copy_does_not():
    from sklearn.datasets import load_sample_image

    photo = load_sample_image("china.jpg")
    assert input_checks.COLOUR in checks_of(encoded(photo, "JPEG"))
    grey = np.asarray(Image.fromarray(photo).convert("L"))
    assert input_checks.COLOUR not in checks_of(encoded(grey))
    # A grey slice saved as RGB is no colour image.
    slice_rgb = np.repeat(decode_image(sample_files()[0].read_bytes()).pixels[..., None], 3, -1)
    assert decode_image(encoded(slice_rgb), measure_colour=True).colourfulness == 0.0


def test_colourfulness_is_zero_for_grey_and_large_for_saturated():
    grey = np.repeat(np.linspace(0, 255, 64, dtype=np.uint8)[None, :, None], 3, axis=2)
    assert input_checks.colourfulness(np.repeat(grey, 64, axis=0)) == 0.0
    red = np.zeros((32, 32, 3), np.uint8)
    red[:16, :, 0] = 255
    assert input_checks.colourfulness(red) > 50


# --- OOD detectors -------------------------------------------------------------------------


def clusters(rng, n: int, dims: int = 16, classes: int = 3, spread: float = 0.3):
    centres = rng.normal(size=(classes, dims)) * 3
    labels = rng.integers(0, classes, n)
    return centres[labels] + rng.normal(size=(n, dims)) * spread, labels, centres


@pytest.mark.parametrize("kind", ["mahalanobis", "knn"])
def test_detectors_score_unfamiliar_embeddings_higher(kind):
    rng = np.random.default_rng(1)
    train, labels, centres = clusters(rng, 600)
    familiar = centres[rng.integers(0, 3, 100)] + rng.normal(size=(100, 16)) * 0.3
    unfamiliar = rng.normal(size=(100, 16)) * 3  # directions no class points to
    detector = fit_detector(kind, train, labels, k=5)
    inside, outside = detector.score(familiar), detector.score(unfamiliar)
    assert np.median(outside) > np.percentile(inside, 95)


def test_knn_scores_in_numpy_equal_scikit_learn(tmp_path):
    from sklearn.neighbors import NearestNeighbors

    rng = np.random.default_rng(2)
    train, labels, _ = clusters(rng, 300)
    detector = fit_detector("knn", train, labels, k=7)
    queries = rng.normal(size=(50, 16))
    search = NearestNeighbors(n_neighbors=7, metric="cosine").fit(detector.arrays["bank"])
    distances, _ = search.kneighbors(l2_normalise(queries))
    np.testing.assert_allclose(detector.score(queries), distances[:, -1], atol=1e-5)


def test_mahalanobis_scores_equal_scikit_learns_distance():
    """The served score is the smallest squared Mahalanobis distance to a class mean under
    the shared Ledoit-Wolf covariance, as scikit-learn computes it."""
    from sklearn.covariance import LedoitWolf

    rng = np.random.default_rng(4)
    train, labels, _ = clusters(rng, 300)
    detector = fit_detector("mahalanobis", train, labels)
    z = l2_normalise(train)
    means = np.stack([z[labels == c].mean(axis=0) for c in range(3)])
    shared = LedoitWolf(assume_centered=True).fit(z - means[labels])
    queries = rng.normal(size=(40, 16))
    expected = np.min([shared.mahalanobis(l2_normalise(queries) - mean) for mean in means], axis=0)
    np.testing.assert_allclose(detector.score(queries), expected, rtol=1e-9)


@pytest.mark.parametrize("kind", ["mahalanobis", "knn"])
def test_detector_round_trips_through_npz(tmp_path, kind):
    rng = np.random.default_rng(3)
    train, labels, _ = clusters(rng, 200)
    detector = fit_detector(kind, train, labels, k=4)
    loaded = OodDetector.from_npz(detector.to_npz(tmp_path / "ood.npz"))
    assert loaded.kind == kind and loaded.k == detector.k
    queries = rng.normal(size=(20, 16))
    np.testing.assert_allclose(loaded.score(queries), detector.score(queries))


def test_fit_detector_refuses_bad_arguments():
    with pytest.raises(ValueError, match="must be one of"):
        fit_detector("isolation_forest", np.ones((4, 2)), np.zeros(4))
    with pytest.raises(ValueError, match="k must be between"):
        fit_detector("knn", np.ones((4, 2)), np.zeros(4), k=9)


def test_energy_is_lower_for_confident_logits():
    logits = np.array([[10.0, 0.0, 0.0, 0.0], [0.1, 0.0, 0.0, 0.0]])
    low, high = energy(logits)
    assert low < high
    assert energy(np.array([[0.0, 0.0]]))[0] == pytest.approx(-np.log(2))


# --- conformal sets ------------------------------------------------------------------------


def noisy_probs(rng, n: int, classes: int = 4, sharp: float = 2.0):
    labels = rng.integers(0, classes, n)
    logits = rng.normal(size=(n, classes))
    logits[np.arange(n), labels] += sharp
    probs = np.exp(logits)
    return probs / probs.sum(axis=1, keepdims=True), labels


@pytest.mark.parametrize("error_rate", [0.05, 0.1, 0.2])
def test_numpy_sets_equal_crepes_sets(error_rate):
    rng = np.random.default_rng(4)
    cal, y_cal = noisy_probs(rng, 400)
    test, _ = noisy_probs(rng, 300)
    thresholds = fit_thresholds(cal, y_cal, error_rate)
    expected = crepes_sets(cal, y_cal, test, error_rate).astype(bool)
    np.testing.assert_array_equal(prediction_sets(test, thresholds), expected)


def test_class_conditional_coverage_is_within_three_points_of_the_target():
    rng = np.random.default_rng(5)
    cal, y_cal = noisy_probs(rng, 4000)
    test, y_test = noisy_probs(rng, 8000)
    sets = prediction_sets(test, fit_thresholds(cal, y_cal, 0.1))
    for c in range(4):
        coverage = sets[y_test == c, c].mean()
        assert abs(coverage - 0.9) <= 0.03, (c, coverage)
    assert 1 < sets.sum(axis=1).mean() < 4  # informative: neither singletons nor everything


def test_a_class_without_calibration_images_is_always_in_the_set():
    rng = np.random.default_rng(7)
    probs, labels = noisy_probs(rng, 200, classes=3)
    keep = labels != 2
    thresholds = fit_thresholds(probs[keep], labels[keep], 0.1)
    assert thresholds[2] == 1.0 and thresholds[:2].max() < 1.0
    assert prediction_sets(probs, thresholds)[:, 2].all()
    with pytest.raises(ValueError, match="error rate"):
        fit_thresholds(probs, np.array([0, 1, 2, 0, 1, 2]), 1.5)


# --- the review rule -----------------------------------------------------------------------


def test_each_reason_fires_alone_on_values_made_for_it():
    base = {"confidence": 0.9, "set_size": 1, "ood": 1.0, "failed": False}
    made = {
        LOW_CONFIDENCE: {"confidence": 0.5},
        AMBIGUOUS: {"set_size": 2},
        OUT_OF_DISTRIBUTION: {"ood": 9.0},
        NOT_BRAIN_MRI: {"failed": True},
    }
    assert set(made) == set(REASONS)
    for reason, change in [(None, {}), *made.items()]:
        values = {**base, **change}
        flags = flag_reasons(
            np.array([values["confidence"]]), np.array([values["set_size"]]),
            np.array([values["ood"]]), np.array([values["failed"]]),
            review_threshold=0.6, ood_threshold=5.0,
        )  # fmt: skip
        assert reasons_of(flags, 0) == ([] if reason is None else [reason])
        assert bool(flags["any"][0]) == (reason is not None)
    empty = flag_reasons(
        np.array([0.9]), np.array([0]), np.array([0.0]), np.array([False]), 0.6, 5.0
    )
    assert reasons_of(empty, 0) == [AMBIGUOUS]  # no plausible class is no clear answer either


def test_fit_guard_holds_its_false_review_rate_on_validation():
    rng = np.random.default_rng(6)
    train, y_train, centres = clusters(rng, 800, classes=4)
    val = centres[(y_val := rng.integers(0, 4, 400))] + rng.normal(size=(400, 16)) * 0.3
    probs, _ = noisy_probs(rng, 400, sharp=4.0)
    probs[np.arange(400), y_val], probs[np.arange(400), 0] = (
        probs[np.arange(400), 0],
        probs[np.arange(400), y_val],
    )  # the true class gets the large probability
    names = ("a", "b", "c", "d")
    card, detector = fit_guard(
        train, y_train, val, probs, y_val, np.zeros(400, bool), names, 0.6,
        GuardSettings(detector="mahalanobis", false_review_rate=0.05),
    )  # fmt: skip
    assert card.validation_rates[OUT_OF_DISTRIBUTION] <= 0.05
    assert card.validation_rates[OUT_OF_DISTRIBUTION] >= 0.04
    assert card.validation_rates[NOT_BRAIN_MRI] == 0.0
    assert all(v >= 0.94 for v in card.validation_set_coverage.values())
    assert (detector.score(val) > card.ood_threshold).mean() == pytest.approx(
        card.validation_rates[OUT_OF_DISTRIBUTION]
    )
    assert len(card.conformal_thresholds) == 4 and card.validation_images == 400


@pytest.mark.slow
@pytest.mark.full_data
def test_no_slice_of_the_full_kaggle_set_fails_an_input_check(full_dataset_dir: Path):
    """The README's claim: the limits sit outside what any of the 3,264 real slices shows."""
    files = sorted(p for p in full_dataset_dir.glob("*/*/*") if p.is_file())
    assert len(files) == 3264
    failing = [p for p in files if checks_of(p.read_bytes())]
    assert failing == []


def test_the_fast_jpeg_colour_measure_agrees_with_pillows():
    """Colour JPEGs are measured from OpenCV's reduced-size decode; other formats with
    Pillow. Both give about the same colourfulness for the same picture, and 0 for grey."""
    from sklearn.datasets import load_sample_image

    for name in ("china.jpg", "flower.jpg"):
        photo = load_sample_image(name)
        fast = decode_image(encoded(photo, "JPEG"), measure_colour=True).colourfulness
        pillow = decode_image(encoded(photo, "PNG"), measure_colour=True).colourfulness
        assert fast is not None and pillow is not None
        assert abs(fast - pillow) <= 0.1 * pillow, (name, fast, pillow)
    grey = np.repeat(decode_image(sample_files()[0].read_bytes()).pixels[..., None], 3, -1)
    assert decode_image(encoded(grey, "JPEG"), measure_colour=True).colourfulness == 0.0
