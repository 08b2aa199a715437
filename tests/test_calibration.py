"""Temperature scaling: fitted on validation probabilities, applied by the service."""

from __future__ import annotations

import numpy as np
import pytest

from braintumor.evaluation.calibration import (
    Calibration,
    calibrate,
    fit_calibration,
    fit_class_bias,
    fit_temperature,
    nll,
    shift_logits,
)


def synthetic(n: int, sharpen: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Scores z with unit Gaussian noise and a shift `s` on the true class: the true
    posterior is softmax(s * z), so softmax(sharpen * s * z) is calibrated at sharpen = 1
    and needs temperature `sharpen` otherwise."""
    rng = np.random.default_rng(seed)
    shift = 1.5
    labels = rng.integers(0, 4, n)
    scores = rng.normal(0, 1, (n, 4))
    scores[np.arange(n), labels] += shift
    logits = sharpen * shift * scores
    probs = np.exp(logits - logits.max(1, keepdims=True))
    return probs / probs.sum(1, keepdims=True), labels


def test_over_confident_model_gets_a_temperature_above_one_and_a_lower_nll():
    probs, labels = synthetic(4000, sharpen=3.0)
    temperature = fit_temperature(probs, labels)
    assert 2.7 < temperature < 3.3  # it undoes the sharpening
    assert nll(calibrate(probs, temperature), labels) < nll(probs, labels)
    held_out, held_labels = synthetic(4000, sharpen=3.0, seed=1)
    assert nll(calibrate(held_out, temperature), held_labels) < nll(held_out, held_labels)


def test_calibrated_model_keeps_a_temperature_near_one():
    probs, labels = synthetic(4000, sharpen=1.0)
    assert 0.9 < fit_temperature(probs, labels) < 1.1


def test_temperature_never_changes_the_predicted_class():
    probs, labels = synthetic(500, sharpen=3.0)
    calibrated = calibrate(probs, fit_temperature(probs, labels))
    assert (calibrated.argmax(1) == probs.argmax(1)).all()


def test_fit_refuses_mismatched_inputs():
    with pytest.raises(ValueError, match="need probs"):
        fit_temperature(np.ones((3, 4)) / 4, np.array([0, 1]))


def leaning_model(n: int = 4000, lean: tuple = (0.0, 1.2, -0.4, -0.8), seed: int = 3):
    """A model whose logits are the true ones plus a fixed per-class lean."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 2.0, (n, 4))
    labels = np.array([rng.choice(4, p=row) for row in calibrate(np.exp(logits), 1.0)])
    return calibrate(np.exp(logits + np.asarray(lean)), 1.0), labels, np.asarray(lean)


def test_class_bias_undoes_a_planted_lean_and_fixes_predictions():
    probs, labels, lean = leaning_model()
    temperature, bias = fit_class_bias(probs, labels)
    assert temperature == pytest.approx(1.0, abs=0.1)
    assert bias == pytest.approx(-(lean - lean.mean()), abs=0.15)  # centred
    assert bias.mean() == pytest.approx(0.0, abs=1e-9)
    fixed = calibrate(shift_logits(probs, temperature * bias), temperature)
    assert nll(fixed, labels) < nll(calibrate(probs, fit_temperature(probs, labels)), labels)
    # the over-called class (lean +1.2) is predicted less often, closer to its true share
    true_share = np.mean(labels == 1)
    assert abs(np.mean(fixed.argmax(1) == 1) - true_share) < abs(
        np.mean(probs.argmax(1) == 1) - true_share
    )


def test_shift_logits_is_softmax_of_log_probs_plus_shift():
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    shifted = shift_logits(probs, [0.0, np.log(4.0), 0.0])
    np.testing.assert_allclose(shifted[0], np.array([0.7, 0.8, 0.1]) / 1.6)
    np.testing.assert_allclose(shift_logits(probs, [1.0, 1.0, 1.0]), probs)


def test_class_bias_refuses_classes_with_too_few_examples():
    probs, labels, _ = leaning_model(n=200)
    labels = labels.copy()
    labels[labels == 2] = 0
    with pytest.raises(ValueError, match="at least 10 validation examples"):
        fit_class_bias(probs, labels)
    with pytest.raises(ValueError, match="need probs"):
        fit_class_bias(probs[:5], labels[:4])


def test_one_calibration_fit_gives_temperature_and_offsets_together():
    probs, labels, _ = leaning_model()
    calibration = fit_calibration(probs, labels, class_offsets=True)
    temperature, bias = fit_class_bias(probs, labels)
    assert calibration.temperature == pytest.approx(temperature)
    assert calibration.class_offsets == pytest.approx(tuple(bias))
    np.testing.assert_allclose(calibration.logit_shift, temperature * bias)
    # Served: the shifted model's probabilities divided by T = the joint fit on the raw ones.
    shifted = shift_logits(probs, calibration.logit_shift)
    np.testing.assert_allclose(calibrate(shifted, temperature), calibration.apply(probs))
    assert calibration.to_dict() == {"temperature": temperature, "class_offsets": list(bias)}


def test_calibration_without_offsets_is_the_temperature_alone():
    probs, labels = synthetic(3000, sharpen=2.0)
    calibration = fit_calibration(probs, labels, class_offsets=False)
    assert calibration == Calibration(fit_temperature(probs, labels))
    assert calibration.logit_shift is None
    np.testing.assert_allclose(calibration.apply(probs), calibrate(probs, calibration.temperature))
    assert Calibration().apply(np.array([[0.2, 0.6]])) == pytest.approx(np.array([[0.25, 0.75]]))


def test_too_few_images_of_a_class_fall_back_to_the_temperature(caplog):
    probs, labels, _ = leaning_model(n=200)
    labels = labels.copy()
    labels[labels == 2] = 0
    with caplog.at_level("WARNING"):
        calibration = fit_calibration(probs, labels, class_offsets=True)
    assert calibration == Calibration(fit_temperature(probs, labels))
    assert "class offsets not fitted" in caplog.text
    with pytest.raises(ValueError, match="need probs"):
        fit_calibration(probs[:5], labels[:4], class_offsets=True)
