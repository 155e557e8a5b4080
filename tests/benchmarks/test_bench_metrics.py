"""Benchmark: necessity and sufficiency on one batch, against the bare forward passes they need.

The floor is the same perturbed sequences, in the same chunks, fed straight to `model.logits`: what any
implementation must pay. The ratio (engine time / floor time, each the best of several interleaved
rounds) is recorded in `extra_info`; the goal is at most 1.3. Run with
`python -m pytest tests/benchmarks -m '' --benchmark-enable -q` (MiniLM is the slow-marked case).
"""

from __future__ import annotations

import numpy as np
import torch

from effbench.metrics import get_metric
from effbench.metrics.perturbation import PerturbationEngine
from effbench.types import Attribution, Example
from timing import ROUNDS, best_time

SHORT_TEXTS = [
    "a delight",
    "the jokes land",
    "the cast is wonderful but the script is lazy , the pace flags and the ending never finds its footing",
    "a moving film",
    "smartly written and acted , a warm portrait of friendship and loss that never flags from start to finish",
    "tedious",
    "the music is wonderful",
    "not the story , not the cast , not the acting : a mess",
]


def test_necessity_and_sufficiency_against_bare_forward_passes(benchmark, adapter, corpus_sentences):
    texts = corpus_sentences + SHORT_TEXTS
    batch = adapter.make_batch([Example(id=f"bench-{i}", text=text, label=0) for i, text in enumerate(texts)])
    generator = torch.Generator().manual_seed(0)
    attribution = Attribution(
        scores=torch.randn(batch.input_ids.shape, generator=generator) * batch.scorable_mask, explainer="random", version=1
    )
    necessity, sufficiency = get_metric("necessity"), get_metric("sufficiency")

    def run_metrics(record: bool = False) -> PerturbationEngine:
        adapter.perturbation_cache.clear()  # every round computes its passes afresh
        engine = PerturbationEngine(adapter)
        if record:
            engine.chunk_log = []
        necessity.compute(engine, batch, attribution)
        sufficiency.compute(engine, batch, attribution)
        return engine

    recorded = run_metrics(record=True)
    chunks = recorded.chunk_log

    def bare_forward_passes() -> list[torch.Tensor]:
        with torch.inference_mode():
            return [adapter.logits(input_ids, attention_mask) for input_ids, attention_mask in chunks]

    # The floor does the same work: the same sequences, whose probabilities the engine cached.
    assert recorded.forward_calls == len(chunks)
    floor_probabilities = torch.softmax(torch.cat(bare_forward_passes()).double(), -1).numpy()
    assert len(floor_probabilities) == recorded.sequences_evaluated > len(batch)
    np.testing.assert_allclose(floor_probabilities, np.stack(list(recorded._cache.values())), rtol=0, atol=1e-12)

    benchmark(run_metrics)

    if not benchmark.disabled:
        engine_times, floor_times = [], []
        for _ in range(ROUNDS):  # interleaved, so that a busy machine slows both alike
            engine_times.append(best_time(run_metrics, 1))
            floor_times.append(best_time(bare_forward_passes, 1))
        ratio = min(engine_times) / min(floor_times)
        benchmark.extra_info.update(
            {
                "ratio_to_bare_forward": round(ratio, 3),
                "engine_seconds": min(engine_times),
                "bare_forward_seconds": min(floor_times),
                "sequences": recorded.sequences_evaluated,
                "chunks": len(chunks),
                "examples": len(batch),
                "torch_threads": torch.get_num_threads(),
            }
        )
        print(f"\nnecessity + sufficiency / bare forward passes: {ratio:.3f} ({recorded.sequences_evaluated} sequences)")
