"""braintumor: an MLOps system for brain-tumour MRI classification.

The library holds all logic (data, integrity, models, training, evaluation, promotion,
serving helpers) and the CLI's data commands. It never imports ZenML, `steps`, `pipelines`
or `braintumor_zenml` (tests/test_layering.py checks), so it is usable and testable without a
stack. The ZenML-facing code wraps it: `steps/` and `pipelines/`, and `src/braintumor_zenml/`
(the full `braintumor` command, launching runs, Model Control Plane operations and lookups,
materializers, the Kubeflow flavor, the dashboard).
"""

import os

# TensorFlow turns its oneDNN kernels on by itself only on CPUs with AVX512_VNNI, AVX512_BF16
# or AMX. Elsewhere (e.g. AMD EPYC without AVX512) they still train the CNN about 1.36x faster
# (benchmarks/results/train_step.json). Must be set before TensorFlow is imported; a user's
# own TF_ENABLE_ONEDNN_OPTS (0 turns it off) wins.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

__version__ = "0.1.0"
