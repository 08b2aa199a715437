"""Names that form contracts between modules: classes, artifacts, the model, file names."""

from __future__ import annotations

# Canonical class names, in the order of the classifier's outputs.
CLASS_NAMES: tuple[str, ...] = ("glioma", "meningioma", "notumor", "pituitary")
NO_TUMOUR = "notumor"  # every other class is a tumour (the binary view: tumour vs none)

# What a model is trained to answer (`training.task` of a run config): the four classes, or
# tumour vs no tumour. The binary classes are derived from the four (`braintumor.tasks`): every
# class but NO_TUMOUR is a TUMOUR. Splits always carry the four labels.
TASK_FOUR_CLASS = "four_class"
TASK_BINARY = "binary"
TASKS = (TASK_FOUR_CLASS, TASK_BINARY)
TUMOUR = "tumour"
BINARY_CLASS_NAMES: tuple[str, ...] = (NO_TUMOUR, TUMOUR)  # softmax order of a binary model

# Folder names seen in the wild, normalised to the canonical names (lower-cased keys).
CLASS_ALIASES: dict[str, str] = {
    "glioma": "glioma",
    "glioma_tumor": "glioma",
    "glioma_tumour": "glioma",
    "gliomas": "glioma",
    "meningioma": "meningioma",
    "meningioma_tumor": "meningioma",
    "meningioma_tumour": "meningioma",
    "meningiomas": "meningioma",
    "notumor": "notumor",
    "no_tumor": "notumor",
    "no_tumour": "notumor",
    "notumour": "notumor",
    "no-tumor": "notumor",
    "no": "notumor",
    "healthy": "notumor",
    "normal": "notumor",
    "pituitary": "pituitary",
    "pituitary_tumor": "pituitary",
    "pituitary_tumour": "pituitary",
}

# Original dataset splits as they appear in the Kaggle layout, and in data/raw.
SOURCE_SPLITS: dict[str, str] = {"training": "training", "testing": "testing"}
UNSPLIT = "unsplit"

# The manifest's `source` column names the batch an image came from (`braintumor data add`).
# Images ingested without a name, and manifests written before the column existed, are the
# Kaggle set's.
DEFAULT_SOURCE_NAME = "kaggle"

# Splits produced by the leakage-free splitter.
TRAIN, VAL, TEST = "train", "val", "test"

# Evaluation protocols.
PROTOCOL_RESPLIT = "resplit"
PROTOCOL_OFFICIAL = "official"
PROTOCOL_LEAVE_SOURCE_OUT = "leave-source-out"  # train on the other sources, test on one
PROTOCOLS = (PROTOCOL_RESPLIT, PROTOCOL_OFFICIAL)  # the two every source has (quality.py)

# The model in ZenML's Model Control Plane and in the BentoML model store.
MODEL_NAME = "brain-tumor-classifier"
# Cross-validation evaluates a recipe, not a model that can be served: its runs are versions of
# their own ZenML model, so their figures are model-version metadata without a model version
# of MODEL_NAME that has nothing to promote.
CV_MODEL_NAME = "brain-tumor-classifier-cv"
BENTO_SERVICE_NAME = "brain_tumor_classifier"

# File names inside data folders.
MANIFEST_FILE = "manifest.csv"
QUARANTINE_FILE = "quarantine.csv"
SPLITS_FILE = "splits.csv"

# Artifact names: each is one step's output name (`Annotated[..., NAME]`) and what the readers
# (launch, operations, registry, reports, tests) look it up by. `{backbone}`, `{scheme}` and
# `{fold}` are ZenML substitutions; readers fill them with `.format(...)`.
ARTIFACT_IMAGES = "raw_images"
ARTIFACT_MANIFEST = "manifest"
ARTIFACT_CLUSTERS = "clusters"
ARTIFACT_AUDIT_SUMMARY = "audit_summary"
ARTIFACT_AUDIT = "audit_report"
ARTIFACT_SPLITS = "splits"
ARTIFACT_CLASS_BALANCE = "class_balance"
ARTIFACT_MODEL = "model_{backbone}"
ARTIFACT_TRAINING = "training_{backbone}"
ARTIFACT_VAL_METRICS = "val_metrics_{backbone}"
ARTIFACT_LEADERBOARD = "leaderboard"
ARTIFACT_WINNER = "winner"
ARTIFACT_WINNER_MODEL = "winner_model"
ARTIFACT_WINNER_CONFIG = "winner_config"
ARTIFACT_BEST_MODEL = "best_model"  # the winner, calibrated: what every version is served from
ARTIFACT_CALIBRATION = "calibration"
ARTIFACT_TEST_METRICS = "test_metrics"
ARTIFACT_TEST_PREDICTIONS = "test_predictions"
ARTIFACT_DECISION = "promotion_decision"
ARTIFACT_STAGE = "stage"
ARTIFACT_PACKAGED = "packaged"
ARTIFACT_REPORT = "run_report"
ARTIFACT_GUARD = "guard"  # the guard's card entry (thresholds, validation rates)
ARTIFACT_OOD_DETECTOR = "ood_detector"
# Cross-validation and tuning.
ARTIFACT_CV_FOLDS = "cv_folds"
ARTIFACT_CV_FOLD = "cv_{scheme}_{fold}"
ARTIFACT_CV_SUMMARY = "cv_summary"
ARTIFACT_CV_REPORT = "cv_report"
ARTIFACT_TUNING_IMAGES = "tuning_images"
ARTIFACT_TUNING_ROWS = "tuning_rows"
ARTIFACT_STUDY_SUMMARY = "study_summary"
ARTIFACT_BEST_RUN_CONFIG = "best_run_config"

# Drift monitoring: the training pipeline links `reference_features` (image features of the
# training split) to each model version; the monitoring pipeline's outputs.
ARTIFACT_REFERENCE_FEATURES = "reference_features"
# The validation split's image features with the model's answers on them (confidence, OOD
# score, OOD flag): the drift reference when a model version has it.
ARTIFACT_ANSWER_REFERENCE = "answer_reference"
ARTIFACT_DRIFT_REFERENCE = "drift_reference"
ARTIFACT_DRIFT_CURRENT = "drift_current"
ARTIFACT_DRIFT_REPORT = "drift_report"
ARTIFACT_DRIFT_SUMMARY = "drift_summary"
