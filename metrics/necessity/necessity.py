"""necessity: ERASER comprehensiveness as AOPC, from the model's probabilities of y on the perturbed inputs.

The formula lives in effbench (`effbench.metrics.erasure.aopc`); this module only adapts it to `evaluate`.
"""

from effbench.metrics import evaluate_module
from effbench.metrics.erasure import ERASER_CITATION

_DESCRIPTION = """ERASER comprehensiveness (AOPC): the mean over the bins q of p(y|x) - p(y| x without its top-k(q) tokens),
k = max(1, ceil(q m)) over the m scorable tokens, ranked by attribution score. Higher is better. See README.md."""

_KWARGS_DESCRIPTION = """
Args:
    full_probability: per example, p(y|x) on the full input, y the model's prediction.
    perturbed_probabilities: per example, p(y| x without its top-k(q) tokens), one per bin q, in the order of `bins`.
    bins: the fractions q (default ERASER's 0.01, 0.05, 0.10, 0.20, 0.50); only their count is checked here.
Returns:
    necessity: the mean over examples; per_example: each example's value; flags: each example's flags (none, here).
Examples:
    >>> necessity = evaluate.load("metrics/necessity")
    >>> result = necessity.compute(full_probability=[0.95], perturbed_probabilities=[[0.55, 0.55, 0.55, 0.55, 0.45]])
    >>> round(result["necessity"], 6)
    0.42
"""


class Necessity(evaluate_module.AopcModule):
    """evaluate's view of effbench's `necessity` metric (evaluate names the module after this class)."""

    RESULT = "necessity"
    DESCRIPTION = _DESCRIPTION
    INPUTS = _KWARGS_DESCRIPTION
    CITATION = ERASER_CITATION
    REFERENCE_URLS = ["https://aclanthology.org/2020.acl-main.408"]
