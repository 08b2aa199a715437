"""The training pipeline: from data to a gated, promoted, packaged, explained model.

    load data -> audit (duplicates, leakage, shortcuts) -> leakage-free split -> balance plan
      (+ reference image features of the training split, for drift monitoring)
      -> train_<backbone> -> evaluate_<backbone>   (one pair per configured backbone)
      -> select best (validation) -> calibrate winner (validation) -> evaluate winner (test)
      -> fit guard (OOD detector on train; its threshold and conformal sets on validation)
      -> gate (vs production, on test images neither trained on) -> promote -> package -> report

What each step runs with. `run` (the `parameters.run` block of `configs/<profile>.yaml`, a
`braintumor.run_config.RunConfig`) is resolved once, below, when the run is launched; each
step gets only its own slice, so changing one slice re-runs only the steps that read it:
- plan_balance, train_<backbone>, evaluate_<backbone>: that backbone's `TrainingConfig`
  (`training` merged with `overrides.<backbone>`, params.yaml's `clahe:` settings in);
- select_best hands on the winner's `TrainingConfig` (`winner_config`): calibrate_winner,
  evaluate_winner, fit_guard and report read the preprocessing and classes from it;
- fit_guard: `run.guard`; gate: `run.gate` and params.yaml's `gate:` (`promotion_policy`);
  package: `run.package`; report: `run.report`; the train steps' resources: `run.resources`;
- load/audit/split: the data folder, its DVC hash (`data_hash`, so changed data never hits
  the cache) and params.yaml's `integrity:`.

What is served: `best_model`, the winner's trained model after its one calibration
(calibrate_winner, on the validation split: a temperature T, with per-class logit offsets b
when `refit_class_bias` is on; T·b is added to its softmax bias). Packaging exports it as one
ONNX graph that divides the logits by T (probabilities, logits, embedding, Grad-CAM maps),
with the model card (T, b for the record, test metrics, lineage), its guard (`guard`,
`ood_detector`, fitted with the same T) and `answer_reference` (validation images and the
model's answers) as the drift reference. Nothing after calibrate_winner fits anything.

Run it with `braintumor train --config configs/<profile>.yaml`.
"""

from __future__ import annotations

from typing import Any

from zenml import Model, pipeline
from zenml.config import ResourceSettings

from braintumor.constants import MODEL_NAME
from braintumor.run_config import RunConfig, kubernetes_cpu
from steps.audit_data import audit_data
from steps.calibrate_winner import calibrate_winner
from steps.compute_reference_features import compute_reference_features
from steps.evaluate_backbone import evaluate_backbone
from steps.evaluate_winner import evaluate_winner
from steps.fit_guard import fit_guard
from steps.gate import gate
from steps.load_data import load_data
from steps.package import package
from steps.plan_balance import plan_balance
from steps.promote import promote
from steps.report import report
from steps.select_best import select_best
from steps.split_data import split_data
from steps.train_backbone import train_backbone

MODEL = Model(
    name=MODEL_NAME,
    description="Brain-tumour MRI slice classifier (glioma, meningioma, no tumour, pituitary; "
    "or tumour vs no tumour with `training.task: binary`).",
    license="Apache-2.0",
    tags=["mri", "classification", "keras"],
)


def training_step_settings(config: RunConfig) -> dict[str, Any]:
    """Resources for each train_<backbone> step (no other step asks for any).

    `ResourceSettings` carries the GPU, CPU and memory requests; the project's Kubeflow flavor
    (`braintumor_zenml.kubeflow_flavor`) compiles them into the KFP spec. ZenML's Kubernetes
    orchestrator ignores `ResourceSettings` for step pods, so the same requests also go into
    its pod settings (settings of a flavor not in the active stack are ignored).
    """
    wanted = config.resources
    limits: dict[str, Any] = {}
    if wanted.gpu_count:
        limits["nvidia.com/gpu"] = str(wanted.gpu_count)  # pod settings want strings
    if wanted.cpu_count:
        limits["cpu"] = kubernetes_cpu(wanted.cpu_count)
    if wanted.memory:
        limits["memory"] = wanted.memory
    if not limits:
        return {}
    pod = {"pod_settings": {"resources": {"requests": limits, "limits": dict(limits)}}}
    return {
        "resources": ResourceSettings(
            gpu_count=wanted.gpu_count or None,
            cpu_count=wanted.cpu_count,
            memory=zenml_memory(wanted.memory),
        ),
        "orchestrator.kubernetes": pod,
    }


_ZENML_MEMORY_UNITS = {"": "B", "K": "KB", "M": "MB", "G": "GB", "T": "TB"}
_BINARY_FACTORS = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40}
_DECIMAL_FACTORS = {"": 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}


def zenml_memory(quantity: str | None) -> str | None:
    """A Kubernetes memory quantity of the run config ("16Gi", "1.5G") in ZenML's format
    ("16GiB", "1500MB"): whole numbers only, so a fraction is written in KiB or bytes."""
    if quantity is None:
        return None
    number = quantity.rstrip("KMGTi")
    suffix = quantity[len(number) :]
    if suffix.endswith("i"):
        units, factors = {s: f"{s}B" for s in _BINARY_FACTORS}, _BINARY_FACTORS
    else:
        units, factors = _ZENML_MEMORY_UNITS, _DECIMAL_FACTORS
    if float(number).is_integer():
        return f"{int(float(number))}{units[suffix]}"
    smallest = "Ki" if suffix.endswith("i") else ""
    return f"{round(float(number) * factors[suffix] / factors[smallest])}{units[smallest]}"


@pipeline(model=MODEL)
def training_pipeline(
    data_source: str,
    data_hash: str,
    run: dict[str, Any],
    integrity: dict[str, Any],
    clahe: dict[str, Any],
    promotion_policy: dict[str, Any],
    policy_source: str = "params.yaml:gate",
    production_version: str = "none",
    git_commit: str = "unknown",
) -> None:
    # The run config is resolved here, once, when the run is launched; each step gets only its
    # own slice (ZenML validates a dict parameter into the step's pydantic type), so a change
    # to one slice leaves the cache of the steps that do not read it.
    config = RunConfig(**run)
    trainings = {  # every backbone's TrainingConfig, CLAHE settings of params.yaml in
        backbone: training.model_dump(mode="json")
        for backbone, training in config.training_configs(clahe).items()
    }
    images, manifest = load_data(source=data_source, data_hash=data_hash)
    clusters, audit_summary, _ = audit_data(images=images, manifest=manifest, integrity=integrity)
    splits = split_data(manifest=manifest, clusters=clusters, integrity=integrity)
    compute_reference_features(images=images, splits=splits)  # for drift checks later
    class_balance = plan_balance(splits=splits, trainings=trainings)

    models, summaries, val_metrics = [], [], []
    for backbone, training in trainings.items():
        per_backbone = {"substitutions": {"backbone": backbone}}
        model, summary = train_backbone.with_options(
            **per_backbone, settings=training_step_settings(config)
        )(images, splits, class_balance, config=training, id=f"train_{backbone}")
        metrics = evaluate_backbone.with_options(**per_backbone)(
            model, images, splits, config=training, id=f"evaluate_{backbone}"
        )
        models.append(model)
        summaries.append(summary)
        val_metrics.append(metrics)

    # The winner is known only when the run gets there (a DAG is fixed before): select_best
    # takes every model as an input and hands on the winner's model and TrainingConfig, so no
    # step looks a model up by name.
    leaderboard, winner, winner_model, winner_config = select_best(
        val_metrics=val_metrics, trainings=summaries, models=models, configs=trainings
    )
    best_model, calibration = calibrate_winner(
        winner_model=winner_model, images=images, splits=splits, config=winner_config
    )
    test_metrics, test_predictions = evaluate_winner(
        best_model=best_model,
        calibration=calibration,
        images=images,
        splits=splits,
        config=winner_config,
    )
    guard, ood_detector, _ = fit_guard(
        best_model=best_model,
        images=images,
        splits=splits,
        calibration=calibration,
        config=winner_config,
        settings=config.guard.model_dump(mode="json"),
    )
    decision = gate(
        test_metrics=test_metrics,
        test_predictions=test_predictions,
        images=images,
        splits=splits,
        settings=config.gate.model_dump(mode="json"),
        promotion_policy=promotion_policy,
        policy_source=policy_source,
        production_version=production_version,
        git_commit=git_commit,
        data_hash=data_hash,
    )
    stage = promote(promotion_decision=decision, winner=winner)
    package(
        best_model=best_model,
        guard=guard,
        ood_detector=ood_detector,
        stage=stage,
        images=images,
        splits=splits,
        settings=config.package.model_dump(mode="json"),
    )
    report(
        leaderboard=leaderboard,
        winner=winner,
        trainings=summaries,
        test_metrics=test_metrics,
        test_predictions=test_predictions,
        best_model=best_model,
        promotion_decision=decision,
        audit_summary=audit_summary,
        images=images,
        splits=splits,
        config=winner_config,
        settings=config.report.model_dump(mode="json"),
        data_hash=data_hash,
        git_commit=git_commit,
    )
