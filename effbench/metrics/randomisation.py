"""The model-parameter randomisation check (Adebayo et al. 2018; for text, Zafar et al. 2021).

An explanation of the trained model should differ from the same explainer's explanation of a model whose top
layers are re-initialised: `model_randomisation` is the Spearman correlation, over the scorable tokens, of the
two. The randomised copy is built once per model (on first use, kept on the metric) with the model's own
initialisation (`_init_weights`), seeded: the classification head (every module outside the base model, and
the base model's pooler if it has one) and the top `layers` transformer layers ("all": every layer; the
embeddings are kept). Both explanations are of the trained model's prediction y.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import TYPE_CHECKING

import numpy as np

from effbench.errors import EffbenchError
from effbench.metrics.base import ExplainerMetric, MetricResult, scorable_scores, snap_to_grid, top_k

if TYPE_CHECKING:
    from effbench.metrics.perturbation import PerturbationEngine
    from effbench.types import Attribution, Batch

CONSTANT_ON_ONE_MODEL = "constant_scores_on_a_model"
TOO_FEW_TOKENS = "fewer_than_2_tokens"

ADEBAYO_CITATION = """@inproceedings{adebayo2018sanity,
    title = {Sanity Checks for Saliency Maps},
    author = {Adebayo, Julius and Gilmer, Justin and Muelly, Michael and Goodfellow, Ian and Hardt, Moritz and Kim, Been},
    booktitle = {Advances in Neural Information Processing Systems},
    volume = {31},
    year = {2018},
    url = {https://proceedings.neurips.cc/paper/2018/hash/294a8ed24b1ad22ec2e7efea049b8737-Abstract.html},
}"""


def randomised_copy(model, layers, seed: int):
    """A copy of the adapter `model` whose head and top `layers` layers ("all": every one) are re-initialised
    by the model's own `_init_weights`, seeded; no cache is shared with the original."""
    import torch

    randomised = copy.copy(model)
    randomised.model = copy.deepcopy(model.model)
    randomised._layers = randomised._find_layers()
    randomised.perturbation_cache = {}
    randomised.forward_cache = None  # its forwards must never be read as the trained model's
    randomised.provenance = None
    network, base = randomised.model, randomised.model.base_model
    modules = [module for module in network.children() if module is not base]
    if getattr(base, "pooler", None) is not None:
        modules.append(base.pooler)
    count = len(randomised._layers) if layers == "all" else layers
    modules += randomised._layers[len(randomised._layers) - count:] if count else []
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        for module in modules:
            for part in module.modules():
                network._init_weights(part)
    return randomised


def spearman(first: np.ndarray, second: np.ndarray) -> tuple[float, list[str]]:
    """Spearman's rho of two score vectors after snapping to the tie grid; NaN with a flag where undefined."""
    from scipy.stats import spearmanr

    first, second = snap_to_grid(first), snap_to_grid(second)
    if len(first) < 2:
        return float("nan"), [TOO_FEW_TOKENS]
    if np.all(first == first[0]) or np.all(second == second[0]):
        return float("nan"), [CONSTANT_ON_ONE_MODEL]
    return float(spearmanr(first, second).statistic), []


def top_k_intersection(first: np.ndarray, second: np.ndarray, fraction: float) -> float:
    """|top-k of first & top-k of second| / k, k = max(1, ceil(fraction m)), ranked as the erasure metrics."""
    k = top_k(fraction, len(first))
    order = lambda scores: set(np.argsort(-snap_to_grid(scores), kind="stable")[:k].tolist())  # noqa: E731
    return len(order(first) & order(second)) / k


class ModelRandomisation(ExplainerMetric):
    """Spearman correlation of the scores on the trained model and on a copy with re-initialised top layers. Lower is better."""

    name = "model_randomisation"
    version = 1
    family = "randomisation"
    direction = "lower"
    range = (-1.0, 1.0)
    citation = ADEBAYO_CITATION
    defaults = {"layers": "all", "top_fraction": 0.2, "seed": 0}

    def __init__(self, **params):
        super().__init__(**params)
        self._randomised: tuple[object, object] | None = None  # (the trained adapter, its randomised copy)

    def validate(self) -> None:
        layers = self.params["layers"]
        if layers != "all" and (isinstance(layers, bool) or not isinstance(layers, int) or layers < 0):
            raise EffbenchError(f"metric 'model_randomisation': layers must be 'all' or an integer >= 0, got {layers!r}")
        fraction = self.params["top_fraction"]
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction <= 1:
            raise EffbenchError(f"metric 'model_randomisation': top_fraction must be in (0, 1], got {fraction!r}")
        self._check_integer("seed", 0)

    def randomised_model(self, model):
        """The randomised copy of `model`, built on first use and kept until another model comes."""
        if self._randomised is None or self._randomised[0] is not model:
            layers = self.params["layers"]
            if layers != "all" and layers > model.num_layers:
                raise EffbenchError(f"metric 'model_randomisation': layers={layers} but the model has {model.num_layers}")
            self._randomised = (model, randomised_copy(model, layers, self.params["seed"]))
        return self._randomised[1]

    def compute(self, engine: PerturbationEngine, batch: Batch, attribution: Attribution, explainer=None) -> MetricResult:
        import torch

        if explainer is None:
            raise EffbenchError("metric 'model_randomisation' reruns the explainer: pass it to compute")
        positions, scores, flags = scorable_scores(batch, attribution)
        randomised = self.randomised_model(engine.model)
        with torch.no_grad():
            forward = randomised.forward(batch.input_ids, batch.attention_mask)
        rerun = explainer.explain(randomised, dataclasses.replace(batch, forward=forward))
        randomised.perturbation_cache.clear()
        _, rerun_scores, rerun_flags = scorable_scores(batch, rerun)
        values = np.full(len(batch), np.nan)
        details: list[dict] = [{} for _ in range(len(batch))]
        for index, row_flags in enumerate(flags):
            if not row_flags and rerun_flags[index]:
                row_flags.extend(f"{flag}_on_the_randomised_model" for flag in rerun_flags[index])
            if row_flags:
                continue
            values[index], new_flags = spearman(scores[index], rerun_scores[index])
            row_flags.extend(new_flags)
            details[index] = {"top_k_intersection": top_k_intersection(scores[index], rerun_scores[index],
                                                                       self.params["top_fraction"])}
        return MetricResult(values=values, flags=flags, details=details)
