"""`attention_flow`: Abnar & Zuidema (ACL 2020), attention as the capacities of a flow network.

The layered graph has a node (l, i) per layer boundary l = 0..L and token i; layer l's attention,
averaged over heads and mixed with the residual as in the paper, A~_l = 0.5 mean_h A_l + 0.5 I, gives
the edge (l, j) -> (l + 1, i) the capacity A~_l[i, j]. The score of token j is the maximum flow from
the input node (0, j) to the readout node (L, r) (the first token for encoders, the last real token
for decoders): at most 1, since the readout node's incoming capacities sum to 1.

Maximum flows are computed exactly on integer capacities (scipy's Dinic solver), the capacities being
rounded to multiples of 2^-30: each flow is within n * L * 2^-31 of the real-valued one.

Cost: one maximum flow per token, on a graph of (L + 1) n nodes and L n^2 edges, so about n^3 L work per
example (n = 128 on MiniLM-L6: about 1 s on a busy 2-core CPU). Inputs longer than `max_tokens` (default 256) are refused
with a one-line error rather than approximated: the paper defines no approximation, and rollout
(`attention_rollout`) is the cheap relative the paper proposes alongside.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch

from effbench.errors import EffbenchError
from effbench.explainers.attention import AttentionRollout
from effbench.explainers.base import Explainer

if TYPE_CHECKING:
    from effbench.models.adapter import ClassifierAdapter
    from effbench.types import Batch

CAPACITY_SCALE = 2 ** 30


def flow_scores(mixed: list[np.ndarray], readout: int) -> np.ndarray:
    """The maximum flow from each input node (0, j) to the readout node (L, readout), for per-layer
    capacity matrices `mixed[l]` [n, n] (row i, column j: the capacity of (l, j) -> (l + 1, i))."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import maximum_flow

    layers, n = len(mixed), len(mixed[0])
    sources, targets, capacities = [], [], []
    for layer, matrix in enumerate(mixed):
        rows, columns = np.nonzero(matrix)
        sources.append(layer * n + columns)
        targets.append((layer + 1) * n + rows)
        capacities.append(np.rint(matrix[rows, columns] * CAPACITY_SCALE))
    size = (layers + 1) * n
    graph = csr_matrix((np.concatenate(capacities).astype(np.int32), (np.concatenate(sources), np.concatenate(targets))),
                       shape=(size, size))
    sink = layers * n + readout
    return np.array([maximum_flow(graph, token, sink).flow_value for token in range(n)], dtype=np.float64) / CAPACITY_SCALE


class AttentionFlow(Explainer):
    """Attention flow (see the module docstring)."""

    name = "attention_flow"
    version = 1
    defaults: ClassVar[dict[str, Any]] = {"max_tokens": 256}
    citation = AttentionRollout.citation

    def validate(self) -> None:
        limit = self.params["max_tokens"]
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise EffbenchError(f"parameter max_tokens={limit!r} is not allowed; use a positive integer")

    def scores(self, model: ClassifierAdapter, batch: Batch) -> torch.Tensor:
        lengths = batch.attention_mask.sum(1).tolist()
        if max(lengths) > self.params["max_tokens"]:
            raise EffbenchError(f"attention_flow refuses an input of {max(lengths)} tokens (max_tokens="
                                f"{self.params['max_tokens']}): its cost grows as n^3 per example; raise max_tokens "
                                f"or use attention_rollout")
        forward = model.batch_forward(batch)
        scores = torch.zeros(batch.input_ids.shape, dtype=torch.float64)
        for example, n in enumerate(lengths):
            mixed = [0.5 * layer_attention[example, :, :n, :n].double().mean(0).cpu().numpy() + 0.5 * np.eye(n)
                     for layer_attention in forward.attentions]
            scores[example, :n] = torch.from_numpy(flow_scores(mixed, model.readout_position(n)))
        return scores
