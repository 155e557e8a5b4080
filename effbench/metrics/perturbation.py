"""The perturbation engine: the model's class probabilities on inputs with some tokens removed or masked.

Every metric that needs forward passes asks this engine, never the model. A perturbation is a pair
(example index in the batch, the set of positions to take out); only scorable positions can be taken out,
so special tokens ([CLS], [SEP]) always stay. Modes:

- `remove`: delete the token ids and re-pack the sequence (on ids, no decode and re-tokenise).
- `mask`: replace the ids by the tokenizer's mask token; without one, by its unk token unless that is
  also a special token the model relies on (GPT-2's unk is its eos); else `mask` is refused.

The pending perturbations of a request are deduplicated and run per (example, family), longest first, in
chunks of at most `max_batch_tokens` (padded) tokens that hold nothing else: a result depends on the
example and its family only, not on the batch, a resume or the other explainers. Families: the full
input (alone), leave-one-out (always asked for whole), and each explainer's sets (the runner gives each
explainer its own). Results are cached for the batch by (token ids of the example, mode, positions taken
out, family): the full input and the leave-one-out passes, which no explainer changes, are computed once
per batch, and so is any set two metrics of one explainer share. When the model has a `forward_cache`
(effbench.forward_cache), whole (example, family) requests persist on disk, across explainers,
processes and resumes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from effbench.errors import EffbenchError
from effbench.forward_cache import ForwardCache, model_key, request_key
from effbench.metrics.base import PERTURBATION_MODES
from effbench.types import Batch

# (example index in the batch, positions in its row to remove or mask)
Perturbation = tuple[int, frozenset[int]]
# (example's token ids, mode, positions, family): the empty set is the full input in either mode and family
CacheKey = tuple[tuple[int, ...], str, frozenset[int], str]
# Families of perturbed inputs. Each (example, family) is forwarded in chunks of its own, so its results
# do not depend on what else is asked for (other examples, other explainers, a resume): "loo" is always
# asked for whole (every scorable token left out once); "set" holds any other sets a metric asks for.
LEAVE_ONE_OUT, SETS = "loo", "set"

DEFAULT_MAX_BATCH_TOKENS = 8192
# what one more forward call costs, in padded tokens of a row: MiniLM on one CPU thread takes about 5.6 ms
# per call and 0.17 ms per token. Chunks cut at every length were 1.49x slower on short sentences; chunks
# never cut pad a sufficiency grid of a long review by up to its whole length
CALL_COST_IN_TOKENS = 32


def mask_token_id(tokenizer) -> int | None:
    """The token `mask` perturbations write: the mask token; without one, the unk token unless it is also
    a token the model relies on (BOS, EOS, padding, CLS, SEP: GPT-2's unk is its eos); else None."""
    if tokenizer.mask_token_id is not None:
        return tokenizer.mask_token_id
    relied_on = {getattr(tokenizer, f"{name}_token_id", None) for name in ("bos", "eos", "pad", "cls", "sep")}
    unknown = tokenizer.unk_token_id
    return unknown if unknown is not None and unknown not in relied_on else None


def _full_inputs(batch: Batch) -> list[Perturbation]:
    return [(index, frozenset()) for index in range(len(batch))]


@dataclass(frozen=True)
class _PreparedBatch:
    """A batch as plain arrays, computed once per batch the engine sees."""

    rows: list[np.ndarray]  # each example's real token ids (padding cut off)
    row_keys: list[tuple[int, ...]]
    scorable_positions: list[np.ndarray]  # ascending
    scorable_sets: list[frozenset[int]]
    targets: np.ndarray  # [B]


class PerturbationEngine:
    """Class probabilities under perturbations of one model's inputs, batched, chunked and cached.

    `mode` is the default for calls that name none; metrics always pass their own recorded `mode`.
    `forward_calls` and `sequences_evaluated` count the model calls and the sequences they ran.
    Set `chunk_log` to a list to have every forward chunk's (input_ids, attention_mask) appended to it.
    """

    def __init__(self, model, mode: str = "remove", max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS,
                 sets_family: str = SETS):
        if mode not in PERTURBATION_MODES:
            raise EffbenchError(f"perturbation mode must be one of {', '.join(PERTURBATION_MODES)}, got {mode!r}")
        if not isinstance(max_batch_tokens, int) or isinstance(max_batch_tokens, bool) or max_batch_tokens < 1:
            raise EffbenchError(f"max_batch_tokens must be a positive integer, got {max_batch_tokens!r}")
        self.model = model
        self.mode = mode
        self.max_batch_tokens = max_batch_tokens
        # the family of the sets the metrics ask for: the runner gives each explainer its own, so that its
        # numbers do not depend on which other explainers ran on the batch first (sharing saved 0.4% of passes)
        self.sets_family = sets_family
        tokenizer = model.tokenizer
        self.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.mask_token_id = mask_token_id(tokenizer)
        self.forward_calls = 0
        self.sequences_requested = 0  # every perturbed input a metric asked for: the logical passes
        self.sequences_evaluated = 0  # those forwarded here: the passes computed
        self.sequences_from_forward_cache = 0
        # the model's persistent cache of whole requests (None: none); a model of unknown weights is never cached
        self.forward_cache: ForwardCache | None = getattr(model, "forward_cache", None)
        self._model_key = model_key(model) if self.forward_cache is not None else None
        self._chunking = {"max_batch_tokens": max_batch_tokens, "call_cost_in_tokens": CALL_COST_IN_TOKENS}
        self.chunk_log: list[tuple[torch.Tensor, torch.Tensor]] | None = None
        # shared by every engine on the same model, so that an explainer's passes (leave_one_out) and a
        # metric's identical passes in another engine are computed once
        shared = getattr(model, "perturbation_cache", None)
        self._cache: dict[CacheKey, np.ndarray] = shared if shared is not None else {}
        self._prepared: dict[int, tuple[Batch, _PreparedBatch]] = {}

    # ---- what metrics ask for --------------------------------------------------------------------

    def probabilities(self, batch: Batch, perturbations: Sequence[Perturbation], mode: str | None = None,
                      family: str | None = None) -> np.ndarray:
        """Class probabilities [R, C] (float64) on each perturbed input, in the order asked."""
        mode = self._resolve_mode(mode)
        family = family or self.sets_family
        prepared = self._prepare(batch)
        keys = [self._key(prepared, index, positions, mode, family) for index, positions in perturbations]
        self.sequences_requested += len(keys)
        pending: dict[CacheKey, np.ndarray] = {}
        for key, (index, positions) in zip(keys, perturbations):
            if key not in self._cache and key not in pending:
                pending[key] = self._perturbed_ids(prepared.rows[index], positions, mode)
        if pending:
            self._run(pending)
        return np.stack([self._cache[key] for key in keys]) if keys else np.zeros((0, 0))

    def target_probabilities(self, batch: Batch, perturbations: Sequence[Perturbation], mode: str | None = None,
                             family: str | None = None) -> np.ndarray:
        """p(y | perturbed input) [R] for each example's target y."""
        probabilities = self.probabilities(batch, perturbations, mode, family)
        if len(perturbations) == 0:
            return np.zeros(0)
        targets = self._prepare(batch).targets[[index for index, _ in perturbations]]
        return probabilities[np.arange(len(perturbations)), targets]

    def full_probabilities(self, batch: Batch) -> np.ndarray:
        """Class probabilities [B, C] on the full inputs."""
        return self.probabilities(batch, _full_inputs(batch))

    def full_target_probabilities(self, batch: Batch) -> np.ndarray:
        """p(y | x) [B] on the full inputs."""
        return self.target_probabilities(batch, _full_inputs(batch))

    def leave_one_out(self, batch: Batch, mode: str | None = None) -> list[np.ndarray]:
        """Per example, p(y | x without j) for each scorable position j, in position order."""
        prepared = self._prepare(batch)
        singletons = [
            (index, frozenset((int(position),)))
            for index, positions in enumerate(prepared.scorable_positions)
            for position in positions
        ]
        flat = self.target_probabilities(batch, singletons, mode, LEAVE_ONE_OUT)
        split_at = np.cumsum([len(positions) for positions in prepared.scorable_positions])[:-1]
        return np.split(flat, split_at) if len(batch) else []

    def scorable_positions(self, batch: Batch) -> list[np.ndarray]:
        """Per example, its scorable positions, ascending: the order `leave_one_out` follows."""
        return self._prepare(batch).scorable_positions

    # ---- internals -------------------------------------------------------------------------------

    def _resolve_mode(self, mode: str | None) -> str:
        mode = self.mode if mode is None else mode
        if mode not in PERTURBATION_MODES:
            raise EffbenchError(f"perturbation mode must be one of {', '.join(PERTURBATION_MODES)}, got {mode!r}")
        if mode == "mask" and self.mask_token_id is None:
            raise EffbenchError("mode 'mask' needs a mask token, or an unk token that is no special token the model relies on; "
                                "this tokenizer has neither: use mode 'remove'")
        return mode

    def _prepare(self, batch: Batch) -> _PreparedBatch:
        # Keyed by id(); the batch itself is kept so that its id cannot be reused while cached.
        cached = self._prepared.get(id(batch))
        if cached is not None and cached[0] is batch:
            return cached[1]
        input_ids = batch.input_ids.cpu().numpy()
        attention = batch.attention_mask.cpu().numpy().astype(bool)
        scorable = batch.scorable_mask.cpu().numpy().astype(bool)
        if (scorable & ~attention).any():
            raise EffbenchError("the batch's scorable mask marks padding as scorable")
        rows, row_keys, positions, sets = [], [], [], []
        for row_ids, row_attention, row_scorable in zip(input_ids, attention, scorable):
            length = int(row_attention.sum())
            if not row_attention[:length].all():
                raise EffbenchError("the batch must be right-padded: real tokens first, then padding")
            row = row_ids[:length].copy()
            row_positions = np.flatnonzero(row_scorable)
            rows.append(row)
            row_keys.append(tuple(row.tolist()))
            positions.append(row_positions)
            sets.append(frozenset(row_positions.tolist()))
        prepared = _PreparedBatch(rows, row_keys, positions, sets, batch.targets.cpu().numpy().astype(np.int64))
        self._prepared[id(batch)] = (batch, prepared)
        return prepared

    def _key(self, prepared: _PreparedBatch, index: int, positions: frozenset[int], mode: str, family: str) -> CacheKey:
        if not positions <= prepared.scorable_sets[index]:
            outside = sorted(positions - prepared.scorable_sets[index])
            raise EffbenchError(f"positions {outside} of example {index} are not scorable tokens; only those can be perturbed")
        return (prepared.row_keys[index], mode if positions else "", positions, family if positions else "")

    def _perturbed_ids(self, row: np.ndarray, positions: frozenset[int], mode: str) -> np.ndarray:
        if not positions:
            return row
        chosen = np.fromiter(positions, dtype=np.int64, count=len(positions))
        if mode == "remove":
            keep = np.ones(len(row), dtype=bool)
            keep[chosen] = False
            return row[keep]
        masked = row.copy()
        masked[chosen] = self.mask_token_id
        return masked

    def _run(self, pending: dict[CacheKey, np.ndarray]) -> None:
        """Forward the pending sequences of each (example, family) in chunks of their own, longest first, of at
        most max_batch_tokens padded tokens: a result never depends on what else is in the batch. A request
        the forward cache holds is read from it: the same bits."""
        groups: dict[tuple, list[CacheKey]] = {}
        for key in pending:
            groups.setdefault((key[0], key[3]), []).append(key)
        for group in groups.values():
            keys = sorted(group, key=lambda key: -len(pending[key]))  # stable: ties keep request order
            rows = [pending[key] for key in keys]
            stored_key = None
            if self.forward_cache is not None and self._model_key is not None:
                stored_key = request_key(self._model_key, self._chunking, rows)
                stored = self.forward_cache.get(stored_key)
                if stored is not None and len(stored) == len(rows):
                    self.sequences_from_forward_cache += len(rows)
                    self._cache.update(zip(keys, stored))
                    continue
            probabilities = self._run_rows(rows)
            self._cache.update(zip(keys, probabilities))
            if stored_key is not None:
                self.forward_cache.put(stored_key, probabilities)

    def _run_rows(self, rows: list[np.ndarray]) -> np.ndarray:
        """Probabilities [R, C] of rows sorted longest first, forwarded in chunks of at most max_batch_tokens,
        cut where a row is more than CALL_COST_IN_TOKENS shorter than the chunk's first."""
        results = []
        start = 0
        while start < len(rows):
            width = len(rows[start])
            count = max(1, self.max_batch_tokens // max(width, 1))
            end = start + 1
            # a shorter row starts a chunk of its own when padding it would cost more than another call
            while end < len(rows) and end - start < count and width - len(rows[end]) <= CALL_COST_IN_TOKENS:
                end += 1
            input_ids = np.full((end - start, width), self.pad_token_id, dtype=np.int64)
            attention_mask = np.zeros((end - start, width), dtype=np.int64)
            for row, ids in enumerate(rows[start:end]):
                input_ids[row, : len(ids)] = ids
                attention_mask[row, : len(ids)] = 1
            results.append(self._forward(torch.from_numpy(input_ids), torch.from_numpy(attention_mask)))
            start = end
        return np.concatenate(results)

    def _forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> np.ndarray:
        """Class probabilities [R, C] of one chunk; where it runs out of memory, of its halves (no row changes:
        each keeps the chunk's padding, and the model reads no padding)."""
        from effbench.memory import run_halving_on_oom

        if self.chunk_log is not None:
            self.chunk_log.append((input_ids, attention_mask))

        def forward(rows: range) -> np.ndarray:
            part = slice(rows.start, rows.stop)
            with torch.inference_mode():
                logits = self.model.logits(input_ids[part], attention_mask[part])
                # float64 from the logits, whatever dtype the model runs in
                probabilities = torch.softmax(logits.double(), dim=-1).cpu().numpy()
            self.forward_calls += 1
            self.sequences_evaluated += len(rows)
            return probabilities

        return np.stack(run_halving_on_oom(forward, range(len(input_ids)), what="perturbed inputs of a chunk"))
