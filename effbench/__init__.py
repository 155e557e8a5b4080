"""effbench: scores explanations of transformer text classifiers.

Importing the package is cheap: torch and transformers load only when a model,
an explainer or a metric is used.
"""

__version__ = "0.1.0"

from effbench.errors import EffbenchError

from effbench.paths import metric_module

__all__ = ["EffbenchError", "RunConfig", "__version__", "evaluate", "load_model", "load_task", "metric_module"]

_LAZY = {"evaluate": "effbench.runner", "RunConfig": "effbench.runner", "load_model": "effbench.models.loading",
         "load_task": "effbench.tasks"}


def __getattr__(name: str):
    # these import torch, transformers or the registries; keep `import effbench` itself light
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'effbench' has no attribute {name!r}")
