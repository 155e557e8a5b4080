"""Yeh et al. (2019): `sensitivity_max` (how much an explanation moves under a small input perturbation)
and `infidelity` (how well the scores predict the output's change under random perturbations).

Both perturb the scorable tokens' vectors at the embedding layer's output (the gradient explainers' default
input point); special tokens and padding are never perturbed. Noise is drawn per example from (seed,
example id), and each example runs on its own, unpadded, so a value does not depend on the batch.

`sensitivity_max` reruns the explainer on a batch of the one example inside `embedding_output_offset`, a
forward hook that adds the noise to the embedding layer's output in every forward pass, so that:

- gradient explainers (saliency, grad_x_input, integrated_gradients) read x + delta at their input point
  and differentiate there (at `input_point: word_embeddings` they differentiate at the word embeddings of
  the perturbed model); integrated gradients' pad baseline is read through the same layer, so it moves by
  the same delta;
- attention explainers get a batch without its cached forward pass, so `model.batch_forward` recomputes
  it under the perturbation;
- `random` does not read the model: its sensitivity is 0.

Any other explainer (leave_one_out, whose passes delete token ids and are cached by ids; explainers of
other packages) gets NaN and the flag `explainer_not_perturbable`: a hook on the embedding output would not
reach it faithfully.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import TYPE_CHECKING

import numpy as np

from effbench.errors import EffbenchError
from effbench.metrics.base import ExplainerMetric, Metric, MetricResult, scorable_scores
from effbench.metrics.soft_erasure import example_generator, example_rows, target_outputs_at

if TYPE_CHECKING:
    import torch

    from effbench.metrics.perturbation import PerturbationEngine
    from effbench.types import Attribution, Batch

EXPLAINER_NOT_PERTURBABLE = "explainer_not_perturbable"
SENSITIVITY_STREAM, INFIDELITY_STREAM = 2, 3

YEH_CITATION = """@inproceedings{yeh2019fidelity,
    title = {On the (In)fidelity and Sensitivity of Explanations},
    author = {Yeh, Chih-Kuan and Hsieh, Cheng-Yu and Suggala, Arun and Inouye, David I. and Ravikumar, Pradeep K.},
    booktitle = {Advances in Neural Information Processing Systems},
    volume = {32},
    year = {2019},
    url = {https://proceedings.neurips.cc/paper/2019/hash/a7471fdc77b3435276507cc8f2dc2569-Abstract.html},
}"""


@contextlib.contextmanager
def embedding_output_offset(model, offset: torch.Tensor):
    """Inside the block, every forward pass adds `offset` [1, L, D] to the embedding layer's output (rows of
    width W <= L get its first W positions)."""

    def add(module, args, output):
        if output.shape[1] > offset.shape[1]:
            raise EffbenchError(f"a forward pass of width {output.shape[1]} inside a perturbation of {offset.shape[1]} tokens")
        return output + offset[:, : output.shape[1]].to(device=output.device, dtype=output.dtype)

    handle = model.embedding_module().register_forward_hook(add)
    try:
        yield
    finally:
        handle.remove()


def one_example_batch(batch: Batch, index: int) -> Batch:
    """Example `index` as a batch of its own, padding cut off and without the cached forward pass."""
    import torch

    length = int(batch.attention_mask[index].sum())
    width = batch.input_ids.shape[1]
    fields = {}
    for field in dataclasses.fields(batch):
        value = getattr(batch, field.name)
        if isinstance(value, torch.Tensor) and value.dim() >= 2 and value.shape[1] == width:
            value = value[index: index + 1, :length]
        elif isinstance(value, torch.Tensor) and value.dim() == 1:
            value = value[index: index + 1]
        elif isinstance(value, tuple):
            value = value[index: index + 1]
        elif field.name == "forward":
            value = None
        fields[field.name] = value
    return type(batch)(**fields)


def is_perturbable(explainer) -> bool:
    """Whether every model input the explainer reads goes through the embedding layer's forward pass."""
    return bool(getattr(type(explainer), "reads_model_through_embedding_layer", False))


def sensitivity(base: np.ndarray, perturbed: np.ndarray) -> float:
    """||phi(x + delta) - phi(x)||_2 / ||phi(x)||_2, the norm of a zero explanation taken as 1 (as captum)."""
    norm = float(np.linalg.norm(base))
    return float(np.linalg.norm(np.asarray(perturbed) - np.asarray(base))) / (norm if norm != 0 else 1.0)


class SensitivityMax(ExplainerMetric):
    """Max over uniform perturbations of the embedding output of the relative change of the scores. Lower is better."""

    name = "sensitivity_max"
    version = 1
    family = "robustness"
    direction = "lower"
    range = (0.0, float("inf"))
    citation = YEH_CITATION
    defaults = {"radius": 0.02, "samples": 5, "seed": 0}

    def validate(self) -> None:
        self._check_positive_number("radius")
        self._check_integer("samples", 1)
        self._check_integer("seed", 0)

    def compute(self, engine: PerturbationEngine, batch: Batch, attribution: Attribution, explainer=None) -> MetricResult:
        import torch

        if explainer is None:
            raise EffbenchError("metric 'sensitivity_max' reruns the explainer: pass it to compute")
        positions, _, flags = scorable_scores(batch, attribution)
        values = np.full(len(batch), np.nan)
        details: list[dict] = [{} for _ in range(len(batch))]
        model = engine.model
        for index, row_flags in enumerate(flags):
            if row_flags:
                continue
            if not is_perturbable(explainer):
                row_flags.append(EXPLAINER_NOT_PERTURBABLE)
                continue
            single = one_example_batch(batch, index)
            scorable = torch.from_numpy(positions[index])
            base = explainer.explain(model, single).scores[0, scorable].double().numpy()
            hidden = model.embedding_output(*example_rows(batch, index)).shape[-1]
            generator = example_generator(self.params["seed"], batch.example_ids[index], SENSITIVITY_STREAM)
            sensitivities = []
            for _ in range(self.params["samples"]):
                offset = torch.zeros((1, single.input_ids.shape[1], hidden), dtype=torch.float64)
                offset[0, scorable] = torch.from_numpy(
                    generator.uniform(-self.params["radius"], self.params["radius"], (len(scorable), hidden)))
                with embedding_output_offset(model, offset):
                    perturbed = explainer.explain(model, single).scores[0, scorable].double().numpy()
                sensitivities.append(sensitivity(base, perturbed))
            values[index] = max(sensitivities)
            details[index] = {"sensitivities": sensitivities}
        return MetricResult(values=values, flags=flags, details=details)


def infidelity_from_products(products: np.ndarray, differences: np.ndarray, normalize: bool) -> float:
    """mean_s (beta a_s - d_s)^2, a_s = I_s . phi, d_s = f(x) - f(x - I_s); beta = sum a d / sum a^2 (1 without
    `normalize`; captum's safe division leaves beta 0 where every a_s is 0)."""
    products, differences = np.asarray(products, dtype=np.float64), np.asarray(differences, dtype=np.float64)
    if not normalize:
        return float(np.mean((products - differences) ** 2))
    squares, cross, target = np.sum(products ** 2), np.sum(products * differences), np.sum(differences ** 2)
    beta = cross / (squares if squares != 0 else 1.0)
    return float((beta * beta * squares - 2 * beta * cross + target) / len(products))


class Infidelity(Metric):
    """Yeh et al.'s infidelity with per-token Gaussian perturbations of the embedding output. Lower is better.

    It needs the model (the engine's) but not the explainer: it scores the attribution as given."""

    name = "infidelity"
    version = 1
    family = "robustness"
    direction = "lower"
    range = (0.0, float("inf"))
    citation = YEH_CITATION
    defaults = {"noise_std": 0.1, "samples": 10, "normalize": True, "seed": 0}

    def validate(self) -> None:
        self._check_positive_number("noise_std")
        self._check_integer("samples", 1)
        self._check_integer("seed", 0)
        if not isinstance(self.params["normalize"], bool):
            raise EffbenchError(f"metric 'infidelity': normalize must be true or false, got {self.params['normalize']!r}")

    def noise(self, example_id: str, num_tokens: int) -> np.ndarray:
        """I [samples, m]: the fraction of each scorable token's vector taken away in each sample."""
        generator = example_generator(self.params["seed"], example_id, INFIDELITY_STREAM)
        return generator.normal(0.0, self.params["noise_std"], (self.params["samples"], num_tokens))

    def compute(self, engine: PerturbationEngine, batch: Batch, attribution: Attribution) -> MetricResult:
        import torch

        positions, scores, flags = scorable_scores(batch, attribution)
        values = np.full(len(batch), np.nan)
        details: list[dict] = [{} for _ in range(len(batch))]
        for index, row_flags in enumerate(flags):
            if row_flags:
                continue
            input_ids, attention_mask = example_rows(batch, index)
            embedded = engine.model.embedding_output(input_ids, attention_mask)[0]  # [L, D]
            noise = self.noise(batch.example_ids[index], len(positions[index]))
            kept = torch.ones((len(noise) + 1, embedded.shape[0]), dtype=torch.float64)
            kept[1:, torch.from_numpy(positions[index])] = torch.from_numpy(1 - noise)
            points = (kept[..., None] * embedded.double().cpu()[None]).to(embedded)  # row 0: x itself
            logits = target_outputs_at(engine, input_ids, attention_mask, points, int(batch.targets[index]), "logit")
            differences = logits[0] - logits[1:]
            products = noise @ scores[index]
            values[index] = infidelity_from_products(products, differences, self.params["normalize"])
            details[index] = {"logit": float(logits[0])}
        return MetricResult(values=values, flags=flags, details=details)
