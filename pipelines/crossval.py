"""The cross-validation pipeline: k folds grouped by duplicate cluster, and the same k-fold
ungrouped over every image (redundant copies included, as the research did).

    load data -> audit -> split (the training pipeline's steps, so cached; the split gives
      each image's cluster and status) -> make_folds
      -> cv_grouped_<k>, cv_ungrouped_<k>   (one training per fold and scheme)
      -> summarize_cv (mean ± standard deviation across folds; run and model-version metadata;
         HTML report)

It evaluates a recipe (one backbone of a run config), not a model: nothing is promoted. Each
run is a version of the ZenML model `brain-tumor-classifier-cv` (not of the served model),
whose metadata holds the figures.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zenml import Model, pipeline

from braintumor.constants import ARTIFACT_CV_REPORT, ARTIFACT_CV_SUMMARY, CV_MODEL_NAME
from braintumor.evaluation.crossval import SCHEMES, CrossValidationError
from braintumor.integrity.policy import IntegrityPolicy
from braintumor.lineage import git_commit
from braintumor.run_config import RunConfig
from braintumor_zenml.launch import data_parameters, read_run_config, submit
from pipelines.training import training_step_settings
from steps.audit_data import audit_data
from steps.cv_fold import cv_fold
from steps.load_data import load_data
from steps.make_folds import make_folds
from steps.split_data import split_data
from steps.summarize_cv import summarize_cv

CV_MODEL = Model(
    name=CV_MODEL_NAME,
    description="Cross-validation estimates of a training recipe (grouped and ungrouped k-fold); "
    "its versions hold figures, not a model to serve.",
    license="Apache-2.0",
    tags=["mri", "cross-validation"],
)


@pipeline(model=CV_MODEL)
def crossval_pipeline(
    data_source: str,
    data_hash: str,
    run: dict[str, Any],
    integrity: dict[str, Any],
    clahe: dict[str, Any],
    n_folds: int,
    backbone: str,
    git_commit: str = "unknown",
) -> None:
    config = RunConfig(**run)
    policy = IntegrityPolicy.from_dict(integrity)
    training = config.training_config(backbone, clahe).model_dump(mode="json")
    images, manifest = load_data(source=data_source, data_hash=data_hash)
    clusters, _, _ = audit_data(images=images, manifest=manifest, integrity=integrity)
    splits = split_data(manifest=manifest, clusters=clusters, integrity=integrity)
    folds = make_folds(splits=splits, n_folds=n_folds, seed=policy.seed)
    results = []
    for scheme in SCHEMES:
        for fold in range(n_folds):
            results.append(
                cv_fold.with_options(
                    substitutions={"scheme": scheme, "fold": str(fold)},
                    settings=training_step_settings(config),
                )(
                    images,
                    folds,
                    config=training,
                    scheme=scheme,
                    fold=fold,
                    val_fraction=policy.val_fraction,
                    seed=policy.seed,
                    id=f"cv_{scheme}_{fold}",
                )
            )
    summarize_cv(
        fold_results=results, backbone=backbone, data_hash=data_hash, git_commit=git_commit
    )


@dataclass
class CrossValOutcome:
    run_name: str
    status: str
    summary: dict[str, Any] = field(default_factory=dict)  # summarize_folds + lineage
    report_path: Path | None = None


def launch_crossval(
    config_path: Path,
    n_folds: int,
    data_dir: Path = Path("data/raw"),
    params_path: Path = Path("params.yaml"),
    backbone: str | None = None,
    report_dir: Path | None = Path("reports"),
) -> CrossValOutcome:
    """Cross-validate `backbone` (default: the config's first) with `n_folds` folds."""

    document, config = read_run_config(config_path)
    if isinstance(n_folds, bool) or not isinstance(n_folds, int) or n_folds < 2:
        raise CrossValidationError(f"--folds must be a whole number of at least 2, not {n_folds}")
    backbone = backbone or config.backbones[0]
    if backbone not in config.backbones:
        raise ValueError(f"--backbone {backbone} is not among the config's {config.backbones}")
    run = {k: v for k, v in document["parameters"]["run"].items() if k != "tuning"}
    parameters = {
        **data_parameters(data_dir, params_path),
        "run": run,
        "n_folds": n_folds,
        "backbone": backbone,
        "git_commit": git_commit(),
    }
    pipeline_run = submit(crossval_pipeline, document, parameters, cache=True)
    outcome = CrossValOutcome(pipeline_run.name, str(pipeline_run.status.value))
    step = pipeline_run.steps.get("summarize_cv")
    if step is None or "cv_summary" not in step.outputs:
        return outcome
    outcome.summary = step.outputs[ARTIFACT_CV_SUMMARY][0].load()
    if report_dir is not None:
        report_dir.mkdir(parents=True, exist_ok=True)
        outcome.report_path = report_dir / f"{pipeline_run.name}-cv.html"
        outcome.report_path.write_text(str(step.outputs[ARTIFACT_CV_REPORT][0].load()))
    return outcome
