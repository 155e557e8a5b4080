"""localisation_auprc: the average precision of the scores against the evidence tokens.

The formula lives in effbench (`effbench.metrics.localisation.localisation_auprc`); this module only adapts it to `evaluate`.
"""

from effbench.metrics import evaluate_module
from effbench.metrics.localisation import ERASER_CITATION, localisation_auprc

_DESCRIPTION = """Average precision of the scores over the scorable tokens against the evidence tokens. Higher is better. Examples without evidence give NaN and the flag
no_evidence; the mean is over the others. See README.md."""

_KWARGS_DESCRIPTION = """
Args:
    scores: per example, the attribution scores of its scorable tokens.
    evidence: per example, 1 for each of those tokens that is evidence, else 0.
Returns:
    localisation_auprc: the mean over the examples with a value; per_example: each example's value (NaN where undefined);
    flags: each example's flags.
Examples:
    >>> localisation_auprc = evaluate.load("metrics/localisation_auprc")
    >>> result = localisation_auprc.compute(scores=[[0.3, 0.5, 0.9]], evidence=[[1, 1, 0]])
    >>> round(result["localisation_auprc"], 6)
    0.583333
"""


class LocalisationAUPRC(evaluate_module.LocalisationModule):
    """evaluate's view of effbench's `localisation_auprc` metric (evaluate names the module after this class)."""

    RESULT = "localisation_auprc"
    DESCRIPTION = _DESCRIPTION
    INPUTS = _KWARGS_DESCRIPTION
    CITATION = ERASER_CITATION
    REFERENCE_URLS = ["https://aclanthology.org/2020.acl-main.408"]
    LOCALISE = localisation_auprc
