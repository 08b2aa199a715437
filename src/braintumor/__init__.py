"""braintumor: an MLOps system for brain-tumour MRI classification.

The library holds all logic (data, integrity, models, training, evaluation, promotion,
serving helpers). It never imports ZenML or the pipelines, so it is usable and testable
without a stack; `steps/` and `pipelines/` wrap it.
"""

import os

# TensorFlow turns its oneDNN kernels on by itself only on CPUs with AVX512_VNNI, AVX512_BF16
# or AMX. Elsewhere (e.g. AMD EPYC without AVX512) they still train the CNN 1.15-1.35x faster
# (benchmarks/results/train_step.json). Must be set before TensorFlow is imported; a user's
# own TF_ENABLE_ONEDNN_OPTS (0 turns it off) wins.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

__version__ = "0.1.0"
