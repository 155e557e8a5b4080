"""relevance_mass: the share of the positive scores that lies on the evidence tokens.

The formula lives in effbench (`effbench.metrics.localisation.relevance_mass`); this module only adapts it to `evaluate`.
"""

from effbench.metrics import evaluate_module
from effbench.metrics.localisation import ARRAS_CITATION, relevance_mass

_DESCRIPTION = """Sum of the positive scores on the evidence over the sum of the positive scores. Higher is better. Examples without evidence give NaN and the flag
no_evidence; the mean is over the others. See README.md."""

_KWARGS_DESCRIPTION = """
Args:
    scores: per example, the attribution scores of its scorable tokens.
    evidence: per example, 1 for each of those tokens that is evidence, else 0.
Returns:
    relevance_mass: the mean over the examples with a value; per_example: each example's value (NaN where undefined);
    flags: each example's flags.
Examples:
    >>> relevance_mass = evaluate.load("metrics/relevance_mass")
    >>> result = relevance_mass.compute(scores=[[0.5, -1.0, 0.5, 1.0]], evidence=[[0, 0, 1, 1]])
    >>> result["relevance_mass"]
    0.75
"""


class RelevanceMass(evaluate_module.LocalisationModule):
    """evaluate's view of effbench's `relevance_mass` metric (evaluate names the module after this class)."""

    RESULT = "relevance_mass"
    DESCRIPTION = _DESCRIPTION
    INPUTS = _KWARGS_DESCRIPTION
    CITATION = ARRAS_CITATION
    REFERENCE_URLS = ["https://doi.org/10.1016/j.inffus.2021.11.008"]
    LOCALISE = relevance_mass
