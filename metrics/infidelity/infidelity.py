"""infidelity: Yeh et al.'s infidelity, from the products I_s . phi and the output changes f(x) - f(x - I_s).

The formula lives in effbench (`effbench.metrics.robustness.infidelity_from_products`); this module only adapts it to `evaluate`.
"""

from effbench.metrics import evaluate_module
from effbench.metrics.robustness import YEH_CITATION, infidelity_from_products

_DESCRIPTION = """mean_s (beta a_s - d_s)^2 with a_s = I_s . phi and d_s = f(x) - f(x - I_s), beta the least-squares
scale (1 without normalize). Lower is better. See README.md."""

_KWARGS_DESCRIPTION = """
Args:
    products: per example, a_s = I_s . phi for each sampled perturbation I_s.
    differences: per example, d_s = f(x) - f(x - I_s), f the target's logit, in the same order.
    normalize: scale the scores by the optimal beta first (default true, as effbench's default).
Returns:
    infidelity: the mean over examples; per_example: each example's value; flags: each example's flags (none, here).
Examples:
    >>> metric = evaluate.load("metrics/infidelity")
    >>> result = metric.compute(products=[[1.0, 2.0]], differences=[[2.0, 4.0]])
    >>> round(result["infidelity"], 6)
    0.0
"""


class Infidelity(evaluate_module.MetricModule):
    """evaluate's view of effbench's `infidelity` metric (evaluate names the module after this class)."""

    RESULT = "infidelity"
    DESCRIPTION = _DESCRIPTION
    INPUTS = _KWARGS_DESCRIPTION
    CITATION = YEH_CITATION
    FEATURES = {"products": evaluate_module.FLOATS, "differences": evaluate_module.FLOATS}
    REFERENCE_URLS = ["https://arxiv.org/abs/1901.09392"]

    def score_examples(self, products, differences, normalize=True):
        if any(len(a) != len(d) or not a for a, d in zip(products, differences)):
            raise ValueError("each example needs one output change per product, and at least one")
        return [(infidelity_from_products(a, d, normalize), []) for a, d in zip(products, differences)]
