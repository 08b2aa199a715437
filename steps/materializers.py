"""The materializers' import path before `braintumor_zenml` existed (until December 2026).

ZenML records each artifact's materializer and data type by import path. Artifacts written
by earlier versions name `steps.materializers.<Class>`; this alias keeps them loadable, so a
model version trained before the upgrade can still be promoted, rolled back and packaged.
New artifacts name `braintumor_zenml.materializers`. Not a step.
"""

from braintumor_zenml.materializers import (  # noqa: F401
    ImageFolder,
    ImageFolderMaterializer,
    KerasModelMaterializer,
    OodDetectorMaterializer,
)
