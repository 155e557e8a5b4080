"""effbench: scores explanations of transformer text classifiers.

Importing the package is cheap: torch and transformers load only when a model,
an explainer or a metric is used.
"""

__version__ = "0.1.0"

from effbench.errors import EffbenchError

__all__ = ["EffbenchError", "RunConfig", "__version__", "evaluate"]


def __getattr__(name: str):
    # the runner imports the registries; keep `import effbench` itself light
    if name in ("evaluate", "RunConfig"):
        from effbench import runner

        return getattr(runner, name)
    raise AttributeError(f"module 'effbench' has no attribute {name!r}")
