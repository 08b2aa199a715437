"""The guard at serving time: a model version's OOD detector, conformal thresholds and input
checks applied to each answer (`braintumor.guard`), with NumPy only."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from braintumor.guard.conformal import prediction_sets
from braintumor.guard.ood import OodDetector, energy
from braintumor.guard.review import GuardCard, flag_reasons, reasons_of, set_labels
from braintumor.serving.predictor import OOD_FILE, ModelLoadError, ModelOutputs


@dataclass(frozen=True)
class Assessment:
    """What the guard says of one answer."""

    reasons: list[str]
    prediction_set: list[str] | None  # None: the model has no conformal calibration
    ood_score: float | None
    energy: float
    failed_checks: list[str] = field(default_factory=list)


class Guard:
    """Review reasons for answers of one model version.

    A model packaged without a guard (no `guard` in its card) still gets `low_confidence` and
    `not_brain_mri`; its answers carry no prediction set and no OOD score.
    """

    def __init__(self, card: GuardCard | None, detector: OodDetector | None) -> None:
        if (card is None) != (detector is None):
            raise ModelLoadError("a guard needs both its card entry and its detector file")
        self.card = card
        self.detector = detector

    @classmethod
    def load(cls, model_dir: str | Path, card: GuardCard | None) -> Guard:
        if card is None:
            return cls(None, None)
        path = Path(model_dir) / OOD_FILE
        if not path.is_file():
            raise ModelLoadError(f"{path} is missing: the model card names an OOD detector")
        return cls(card, OodDetector.from_npz(path))

    def assess(
        self,
        outputs: ModelOutputs,
        failed_checks: Sequence[list[str]],
        class_names: Sequence[str],
        review_threshold: float,
    ) -> list[Assessment]:
        probs = outputs.probabilities
        energies = energy(outputs.logits)
        if self.card is None or self.detector is None:
            sets = np.zeros_like(probs, dtype=bool)  # no conformal sets: never "ambiguous"
            sets[np.arange(len(probs)), probs.argmax(axis=1)] = True
            scores = np.full(len(probs), -np.inf)
            ood_threshold = np.inf
        else:
            sets = prediction_sets(probs, np.asarray(self.card.conformal_thresholds))
            scores = self.detector.score(outputs.embedding)
            ood_threshold = self.card.ood_threshold
        failed = np.array([bool(checks) for checks in failed_checks])
        flags = flag_reasons(
            probs.max(axis=1), sets.sum(axis=1), scores, failed, review_threshold, ood_threshold
        )
        guarded = self.card is not None
        return [
            Assessment(
                reasons=reasons_of(flags, i),
                prediction_set=set_labels(sets[i], class_names) if guarded else None,
                ood_score=float(scores[i]) if guarded else None,
                energy=float(energies[i]),
                failed_checks=list(failed_checks[i]),
            )
            for i in range(len(probs))
        ]
