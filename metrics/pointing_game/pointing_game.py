"""pointing_game: 1 if the top-scored token is evidence, else 0.

The formula lives in effbench (`effbench.metrics.localisation.pointing_game`); this module only adapts it to `evaluate`.
"""

from effbench.metrics import evaluate_module
from effbench.metrics.localisation import ZHANG_CITATION, pointing_game

_DESCRIPTION = """1 if the top-scored scorable token is evidence, else 0. Higher is better. Examples without evidence give NaN and the flag
no_evidence; the mean is over the others. See README.md."""

_KWARGS_DESCRIPTION = """
Args:
    scores: per example, the attribution scores of its scorable tokens.
    evidence: per example, 1 for each of those tokens that is evidence, else 0.
Returns:
    pointing_game: the mean over the examples with a value; per_example: each example's value (NaN where undefined);
    flags: each example's flags.
Examples:
    >>> pointing_game = evaluate.load("metrics/pointing_game")
    >>> result = pointing_game.compute(scores=[[0.1, 0.7, 0.2]], evidence=[[0, 1, 0]])
    >>> result["pointing_game"]
    1.0
"""


class PointingGame(evaluate_module.LocalisationModule):
    """evaluate's view of effbench's `pointing_game` metric (evaluate names the module after this class)."""

    RESULT = "pointing_game"
    DESCRIPTION = _DESCRIPTION
    INPUTS = _KWARGS_DESCRIPTION
    CITATION = ZHANG_CITATION
    REFERENCE_URLS = ["https://doi.org/10.1007/s11263-017-1059-x"]
    LOCALISE = pointing_game
