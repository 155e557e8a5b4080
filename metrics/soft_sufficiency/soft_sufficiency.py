"""soft_sufficiency: soft_sufficiency (Soft-NS, Zhao & Aletras 2023), from the model's probabilities of y on the full, null and masked inputs.

The formula lives in effbench (`effbench.metrics.soft_erasure.soft_normalised_sufficiency`); this module only adapts it to `evaluate`.
"""

from effbench.metrics import evaluate_module
from effbench.metrics.soft_erasure import ZHAO_ALETRAS_CITATION, soft_normalised_sufficiency

_DESCRIPTION = """Soft normalised sufficiency (Zhao & Aletras 2023): keep each element of a token's vector with probability q_j. Higher is better. See README.md."""

_KWARGS_DESCRIPTION = """
Args:
    full_probability: per example, p(y|x) on the full input, y the model's prediction.
    null_probability: per example, p(y|x0) with every scorable token's vector zeroed.
    perturbed_probabilities: per example, p(y|x') for each sampled mask.
Returns:
    soft_sufficiency: the mean over examples; per_example: each example's value (NaN where undefined); flags: each example's flags.
Examples:
    >>> metric = evaluate.load("metrics/soft_sufficiency")
    >>> result = metric.compute(full_probability=[0.9], null_probability=[0.4], perturbed_probabilities=[[0.8, 0.6]])
    >>> round(result["soft_sufficiency"], 6)
    0.6
"""


class SoftSufficiency(evaluate_module.SoftErasureModule):
    """evaluate's view of effbench's `soft_sufficiency` metric (evaluate names the module after this class)."""

    RESULT = "soft_sufficiency"
    DESCRIPTION = _DESCRIPTION
    INPUTS = _KWARGS_DESCRIPTION
    CITATION = ZHAO_ALETRAS_CITATION
    REFERENCE_URLS = ["https://aclanthology.org/2023.acl-long.261", "https://github.com/casszhao/SoftFaith"]
    NORMALISED = soft_normalised_sufficiency
