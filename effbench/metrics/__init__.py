"""Metrics: one file per family, all forward passes through the shared perturbation engine.

Third parties register metrics via the `effbench.metrics` entry point. Importing this package imports
neither torch nor the metric modules: built-ins resolve on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from effbench.registry import Registry

if TYPE_CHECKING:
    from effbench.metrics.base import Metric

metrics: Registry = Registry("metric", entry_point_group="effbench.metrics")

for _name, _target in {
    "necessity": "effbench.metrics.erasure:Necessity",
    "sufficiency": "effbench.metrics.erasure:Sufficiency",
    "faithfulness": "effbench.metrics.faithfulness:Faithfulness",
    "sparsity": "effbench.metrics.sparsity:Sparsity",
    "min_sufficient": "effbench.metrics.minimal:MinSufficient",
    "min_necessary": "effbench.metrics.minimal:MinNecessary",
    "soft_sufficiency": "effbench.metrics.soft_erasure:SoftSufficiency",
    "soft_comprehensiveness": "effbench.metrics.soft_erasure:SoftComprehensiveness",
    "sensitivity_max": "effbench.metrics.robustness:SensitivityMax",
    "infidelity": "effbench.metrics.robustness:Infidelity",
    "model_randomisation": "effbench.metrics.randomisation:ModelRandomisation",
    "localisation_auprc": "effbench.metrics.localisation:LocalisationAUPRC",
    "pointing_game": "effbench.metrics.localisation:PointingGame",
    "relevance_mass": "effbench.metrics.localisation:RelevanceMass",
}.items():
    metrics.register(_name, _target, builtin=True)


def get_metric(name: str, **params: Any) -> Metric:
    """A metric instance by registry name (or 'package.module:Class') with its parameters."""
    return metrics.get(name)(**params)
