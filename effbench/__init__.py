"""effbench: scores explanations of transformer text classifiers.

Importing the package is cheap: torch and transformers load only when a model,
an explainer or a metric is used.
"""

__version__ = "0.1.0"

from effbench.errors import EffbenchError

__all__ = ["EffbenchError", "__version__"]
