"""braintumor: an MLOps system for brain-tumour MRI classification.

The library holds all logic (data, integrity, models, training, evaluation, promotion,
serving helpers). It never imports ZenML or the pipelines, so it is usable and testable
without a stack; `steps/` and `pipelines/` wrap it.
"""

__version__ = "0.1.0"
