"""ZenML records a class by where its file lies under the source root (the repository root,
where `.zen` is), so a class of this package would be recorded as
`src.braintumor_zenml.<module>.<class>`. Loading that name imports the module a second time,
under another name, and its classes are not the ones the steps use: a materializer loaded so
refuses the steps' own `ImageFolder`. `by_import_path` has ZenML record the import path, which
loads the module already imported.
"""

from __future__ import annotations

from typing import TypeVar

from zenml.config.source import Source
from zenml.utils.source_utils import ZENML_SOURCE_ATTRIBUTE_NAME

T = TypeVar("T", bound=type)


def by_import_path(cls: T) -> T:
    """Class decorator: ZenML records `cls` as `<its module>.<its name>`."""
    setattr(
        cls,
        ZENML_SOURCE_ATTRIBUTE_NAME,
        Source.from_import_path(f"{cls.__module__}.{cls.__qualname__}"),
    )
    return cls
