"""The explainer contract, as a function anyone can run on their own explainer.

    from effbench.testing import check_explainer_contract
    check_explainer_contract(MyExplainer(), model, examples)

It raises AssertionError naming the first broken rule. `examples` should hold at least two examples
of different lengths, so that batching pads some of them. An explainer that reads the evidence of a task
with a planted trigger (`oracle`) needs examples of such a task (their `evidence` is not None).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from effbench.explainers.base import Explainer
    from effbench.models.adapter import ClassifierAdapter
    from effbench.types import Example


def check_explainer_contract(explainer: Explainer, model: ClassifierAdapter, examples: Sequence[Example], *,
                             tolerance: float = 1e-5) -> None:
    """Check the rules every explainer keeps:

    - metadata: a registry `name` (str), an integer `version`, a BibTeX `citation`, `defaults` (dict),
      and the parameters recorded in every Attribution;
    - one float32 score per token, [B, N], finite, zero outside the scorable tokens;
    - deterministic: the same scores on a second call, whatever the global random state;
    - independent of the batch: each example explained alone gets the scores it got in the padded
      batch of all `examples`, within `tolerance` x max(1, max |score|).
    """
    import torch

    from effbench.types import Attribution

    from effbench.untrusted import excerpt

    label = f"explainer {excerpt(getattr(explainer, 'name', type(explainer).__name__))}"
    from effbench.components import COMPONENT_NAME_RULE, check_component_name, check_component_version
    from effbench.errors import EffbenchError

    try:
        check_component_name(getattr(explainer, "name", None), "explainer")
    except EffbenchError:
        raise AssertionError(f"{label}: `name` must be a str of {COMPONENT_NAME_RULE}") from None
    try:
        check_component_version(getattr(explainer, "version", None), "explainer", explainer.name)
    except EffbenchError:
        raise AssertionError(f"{label}: `version` must be a positive int") from None
    assert isinstance(explainer.citation, str) and explainer.citation.lstrip().startswith("@"), f"{label}: `citation` must be a BibTeX entry"
    assert isinstance(explainer.defaults, dict), f"{label}: `defaults` must be a dict of parameters"
    batch = model.make_batch(examples)
    assert len(set(batch.attention_mask.sum(1).tolist())) > 1, \
        "check_explainer_contract needs examples of different lengths, so that the batch is padded"

    torch.manual_seed(1)
    attribution = explainer.explain(model, batch)
    assert isinstance(attribution, Attribution), f"{label}: explain() must return an Attribution"
    scores = attribution.scores
    assert isinstance(scores, torch.Tensor) and scores.dtype == torch.float32, f"{label}: scores must be a float32 tensor"
    assert tuple(scores.shape) == tuple(batch.input_ids.shape), \
        f"{label}: scores have shape {tuple(scores.shape)}, expected {tuple(batch.input_ids.shape)}"
    assert torch.isfinite(scores).all(), f"{label}: scores must be finite"
    assert (scores[~batch.scorable_mask] == 0).all(), f"{label}: scores must be zero outside the scorable tokens"
    assert attribution.explainer == explainer.name and attribution.version == explainer.version, \
        f"{label}: the Attribution must carry the explainer's name and version"
    assert attribution.params == explainer.params, f"{label}: the Attribution must record the explainer's parameters"

    torch.manual_seed(2)
    again = explainer.explain(model, batch).scores
    scale = max(1.0, float(scores.abs().max()))
    assert torch.allclose(again, scores, rtol=0, atol=tolerance * scale), \
        f"{label}: a second call gave different scores (max difference {float((again - scores).abs().max()):.3g})"

    for row, example in enumerate(examples):
        alone = explainer.explain(model, model.make_batch([example])).scores[0]
        length = alone.shape[0]
        difference = float((alone - scores[row, :length]).abs().max())
        assert difference <= tolerance * scale, \
            f"{label}: example {example.id!r} scored alone differs from its row in a padded batch by {difference:.3g}"
        assert (scores[row, length:] == 0).all(), f"{label}: padding of example {example.id!r} got a score"
