"""The input facts each per-example row carries (effbench.explainers.efficient.input_facts): the token count
n, the tokens the readout row attends to, and min over the readout layer's heads of rank([T | 1])."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from effbench.errors import EffbenchError
from effbench.explainers import get_explainer
from effbench.explainers.efficient import input_facts
from effbench.recordio import read_rows
from effbench.types import Example

SHORT_TEXT = "a delight"
# longer than rank([T | 1]) <= d_h + 1 = 33 tokens of the tiny BERT
LONG_TEXT = ("the film is a delight from start to finish and the cast is wonderful , but the plot is thin , the script "
             "is lazy in places , and the ending never finds its footing , which is a pity for a warm funny film about "
             "friendship , loss and starting over again")


def examples_of(texts: list[str]) -> list[Example]:
    return [Example(id=f"ex-{index}", text=text, label=index % 2) for index, text in enumerate(texts)]


def direct_readout_rank(adapter, batch, example: int) -> int:
    """min over the last layer's heads of rank([T | 1]) over the readout row's tokens, by an SVD in numpy, with the
    spec's tolerance: singular values above s_max * max(n, d) * eps of float32."""
    layer = adapter.num_layers - 1
    n = int(batch.attention_mask[example].sum())
    start, stop = adapter.key_span(layer, adapter.readout_position(n), n)
    with torch.no_grad():
        transfers = adapter.head_transfers(layer, adapter.batch_forward(batch))[example].double().cpu().numpy()
    ranks = []
    for head in range(adapter.num_heads):
        T = transfers[head, start:stop]
        stacked = np.column_stack([T, np.ones(stop - start)])
        singular = np.linalg.svd(stacked, compute_uv=False)
        tolerance = singular[0] * max(stop - start, T.shape[1]) * np.finfo(np.float32).eps
        ranks.append(int((singular > tolerance).sum()))
    return min(ranks)


def test_a_short_input_has_full_rank_and_a_long_one_does_not(tiny_adapter):
    batch = tiny_adapter.make_batch(examples_of([SHORT_TEXT, LONG_TEXT]))
    short, long = input_facts(tiny_adapter, batch)
    lengths = batch.attention_mask.sum(1).tolist()
    assert short["length"] == lengths[0] == len(tiny_adapter.tokenizer(SHORT_TEXT)["input_ids"])  # [CLS] and [SEP] count
    assert short["readout_keys"] == short["readout_rank"] == short["length"]
    assert long["length"] == lengths[1] > tiny_adapter.head_dim + 1
    assert long["readout_keys"] == long["length"]  # BERT's [CLS] row attends to every token
    assert long["readout_rank"] < long["length"]
    assert [short["readout_rank"], long["readout_rank"]] == [direct_readout_rank(tiny_adapter, batch, b) for b in (0, 1)]


def test_the_facts_of_an_input_do_not_depend_on_its_batch(tiny_adapter):
    together = input_facts(tiny_adapter, tiny_adapter.make_batch(examples_of([SHORT_TEXT, LONG_TEXT])))
    alone = [input_facts(tiny_adapter, tiny_adapter.make_batch(examples_of([text])))[0] for text in (SHORT_TEXT, LONG_TEXT)]
    assert together == alone  # the short input's padding in the batch is no token of it


def test_where_the_facts_say_short_efficient_attention_is_raw_attention(tiny_adapter):
    texts = [SHORT_TEXT, "the plot is thin but the jokes land", LONG_TEXT]
    batch = tiny_adapter.make_batch(examples_of(texts))
    facts = input_facts(tiny_adapter, batch)
    efficient = get_explainer("efficient_attention").explain(tiny_adapter, batch).scores
    raw = get_explainer("raw_attention").explain(tiny_adapter, batch).scores
    short = [fact["readout_keys"] <= fact["readout_rank"] for fact in facts]
    assert short == [True, True, False]
    for example, is_short in enumerate(short):
        assert torch.equal(efficient[example], raw[example]) == is_short


def test_the_runner_computes_the_facts_once_per_batch_and_writes_them_into_every_row(toy_env, tmp_path, monkeypatch):
    import effbench
    import effbench.explainers.efficient as efficient_module
    from effbench.models.reference import load_reference_model
    from effbench.tasks import load_task

    task = load_task("toy")
    adapter, _ = load_reference_model(task, "tiny", progress=False)
    calls = []
    counted = efficient_module.input_facts
    monkeypatch.setattr(efficient_module, "input_facts", lambda model, batch: calls.append(len(batch)) or counted(model, batch))
    config = effbench.RunConfig(limit=8, batch_size=4, output_dir=tmp_path, model_kind="tiny")
    effbench.evaluate(["toy"], ["raw_attention", "random"], ["sparsity"], config, progress=False, model=adapter)
    assert calls == [4, 4]  # once per batch, not once per explainer

    expected = {}
    examples = task.test[:8]
    for start in (0, 4):
        batch = adapter.make_batch(examples[start: start + 4])
        expected.update(zip(batch.example_ids, counted(adapter, batch)))
    for explainer in ("raw_attention", "random"):
        [path] = tmp_path.glob(f"toy/{explainer}-*/per_example.jsonl")
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        assert {row["example_id"]: row["input"] for row in rows} == expected


def test_rows_without_facts_still_load_and_malformed_facts_are_refused(tmp_path):
    path = tmp_path / "per_example.jsonl"
    old = {"example_id": "a", "target": 0, "label": 0, "metrics": {"sparsity": {"value": 0.5, "flags": []}}}
    path.write_text(json.dumps(old) + "\n")
    assert "input" not in read_rows(path)["a"]
    good = {**old, "input": {"length": 5, "readout_keys": 5, "readout_rank": 5}}
    path.write_text(json.dumps(good) + "\n")
    assert read_rows(path)["a"]["input"] == good["input"]
    for facts in ({"length": 5, "readout_rank": 5}, {"length": 5, "readout_keys": 5, "readout_rank": -1},
                  {"length": 5, "readout_keys": 5.5, "readout_rank": 5}, [5, 5, 5]):
        path.write_text(json.dumps({**old, "input": facts}) + "\n")
        with pytest.raises(EffbenchError, match=r"line 1: key 'input' must map length, readout_keys, readout_rank"):
            read_rows(path)
