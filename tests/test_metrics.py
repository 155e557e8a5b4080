"""Metrics: registry and parameters, golden values, ERASER's convention, and a toy model with a known answer.

Most tests run the real perturbation engine over `AdditiveModel`, a two-class "classifier" whose
p(class 1) is a bias plus the weights of the token ids present: every perturbed probability can be
computed by hand.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from effbench.errors import EffbenchError, UnknownNameError
from effbench.metrics import get_metric, metrics
from effbench.metrics.base import rank_positions, top_k
from effbench.metrics.minimal import grid_ks
from effbench.metrics.perturbation import PerturbationEngine
from effbench.paths import REPO_ROOT
from effbench.types import Attribution, Batch

PAD, UNK, CLS, SEP, MASK = 0, 100, 101, 102, 103
VOCAB = 128
SPECIAL = {PAD, UNK, CLS, SEP, MASK}
ALL_METRICS = ["faithfulness", "infidelity", "localisation_auprc", "min_necessary", "min_sufficient",
               "model_randomisation", "necessity", "pointing_game", "relevance_mass", "sensitivity_max",
               "soft_comprehensiveness", "soft_sufficiency", "sparsity", "sufficiency"]
# the metrics that need no more of a model than its logits on token ids (AdditiveModel); the others are
# tested on real adapters in tests/test_metric_checks.py
ID_METRICS = ["faithfulness", "localisation_auprc", "min_necessary", "min_sufficient", "necessity", "pointing_game",
              "relevance_mass", "sparsity", "sufficiency"]


class AdditiveModel:
    """p(class 1) = bias + the sum of the weights of the (real) token ids present; p(class 0) = 1 - that."""

    def __init__(self, weights: dict[int, float], bias: float):
        self.tokenizer = SimpleNamespace(pad_token_id=PAD, mask_token_id=MASK, unk_token_id=UNK)
        self.table = torch.zeros(VOCAB, dtype=torch.float64)
        for token_id, weight in weights.items():
            self.table[token_id] = weight
        self.bias = bias

    def probability(self, ids: list[int]) -> float:
        """The same p(class 1), computed directly from a list of ids (for reference formulas)."""
        return self.bias + sum(float(self.table[token_id]) for token_id in ids)

    def logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        p1 = self.bias + (self.table[input_ids] * attention_mask).sum(-1)
        return torch.log(torch.stack([1 - p1, p1], dim=-1))


def make_batch(rows: list[list[int]], targets: list[int], evidence_token: int | None = None) -> Batch:
    """`evidence_token`: the token id the batch's evidence mask marks (for the localisation metrics)."""
    width = max(len(row) for row in rows)
    input_ids = torch.full((len(rows), width), PAD, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for index, row in enumerate(rows):
        input_ids[index, : len(row)] = torch.tensor(row)
        attention_mask[index, : len(row)] = 1
    scorable = attention_mask.bool() & ~torch.isin(input_ids, torch.tensor(sorted(SPECIAL)))
    return Batch(
        example_ids=tuple(f"ex-{index}" for index in range(len(rows))),
        input_ids=input_ids,
        attention_mask=attention_mask,
        scorable_mask=scorable,
        targets=torch.tensor(targets),
        evidence_mask=None if evidence_token is None else (input_ids == evidence_token) & scorable,
    )


def make_attribution(batch: Batch, scores: list[list[float]], explainer: str = "test") -> Attribution:
    """Scores given per example for its scorable tokens, in position order."""
    full = torch.zeros(batch.input_ids.shape, dtype=torch.float32)
    for index, row_scores in enumerate(scores):
        full[index, batch.scorable_mask[index]] = torch.tensor(row_scores, dtype=torch.float32)
    return Attribution(scores=full, explainer=explainer, version=1)


# ---- the golden example (the cards' golden values come from it) --------------------------------
# Example 1: tokens 11, 12, 13, 14 with weights 0.1, 0.4, 0.05, 0.2 and bias 0.2, so p(1|x) = 0.95;
#            scores 0.3, 0.4, -0.2, 0.1: ranked 12, 11, 14, 13 (signed: -0.2 comes last).
# Example 2: tokens 11, 12, 13, so p(1|x) = 0.75; all-zero scores: ranked by position.
# The evidence (localisation metrics) is token 13: scored lowest in example 1, tied with all in example 2.

GOLDEN_MODEL_WEIGHTS = {11: 0.1, 12: 0.4, 13: 0.05, 14: 0.2}
GOLDEN_EXPECTED = {
    "necessity": ([0.42, 0.18], [[], ["constant_scores"]]),  # (4 * 0.40 + 0.50) / 5, (4 * 0.10 + 0.50) / 5
    "sufficiency": ([0.33, 0.37], [[], ["constant_scores"]]),  # (4 * 0.35 + 0.25) / 5, (4 * 0.45 + 0.05) / 5
    "faithfulness": ([2 / 3, 0.0], [[], ["constant_scores"]]),  # effects = weights: 5 concordant pairs, 1 discordant
    "sparsity": ([0.25, 0.0], [[], ["all_zero_scores"]]),  # (-3 * .1 - .2 + .3 + 3 * .4) / (4 * 1.0)
    "min_sufficient": ([0.25, 2 / 3], [[], ["constant_scores"]]),  # only {12}: 0.60 keeps class 1; only {11}: 0.30 does not
    "min_necessary": ([0.5, 2 / 3], [[], ["constant_scores"]]),  # without {12}: 0.55, without {12, 11}: 0.45 flips
    "localisation_auprc": ([0.25, 1 / 3], [[], ["constant_scores"]]),  # 13 ranked 4th of 4: precision 1/4; a tie of 3: 1/3
    "pointing_game": ([0.0, 0.0], [[], ["constant_scores"]]),  # the top token is 12, and 11 (the earliest of a tie)
    "relevance_mass": ([0.0, float("nan")], [[], ["no_positive_scores"]]),  # 13's score is negative; no positive score
    # (the second example's scores are all zero: ranked by position, and flagged)
}


@pytest.fixture()
def golden():
    model = AdditiveModel(GOLDEN_MODEL_WEIGHTS, bias=0.2)
    batch = make_batch([[CLS, 11, 12, 13, 14, SEP], [CLS, 11, 12, 13, SEP]], targets=[1, 1], evidence_token=13)
    attribution = make_attribution(batch, [[0.3, 0.4, -0.2, 0.1], [0.0, 0.0, 0.0]])
    return model, batch, attribution


# ---- registry and parameters ----------------------------------------------------------------------


def test_registry_lists_the_builtin_metrics():
    assert metrics.names() == ALL_METRICS
    assert all(metrics.is_builtin(name) for name in ALL_METRICS)


def test_unknown_metric_suggests_close_names():
    with pytest.raises(UnknownNameError, match="Did you mean 'necessity'"):
        get_metric("necesity")


def test_unknown_parameter_names_it_and_the_allowed_ones():
    with pytest.raises(EffbenchError, match=r"no parameter bin; its parameters: bins, mode"):
        get_metric("necessity", bin=[0.1])


@pytest.mark.parametrize(
    ("name", "params", "named"),
    [
        ("necessity", {"mode": "drop"}, "mode must be one of remove, mask"),
        ("sufficiency", {"bins": [0.0, 0.5]}, "bins must be"),
        ("sufficiency", {"bins": [0.1, 0.1]}, "bins must be"),
        ("necessity", {"bins": []}, "bins must be"),
        ("min_necessary", {"grid": "0.1"}, "grid must be"),
        ("min_sufficient", {"grid": [0.5, 1.5]}, "grid must be"),
        ("faithfulness", {"correlation": "spearman"}, "correlation must be 'kendall_tau_b'"),
        ("faithfulness", {"mode": None}, "mode must be one of"),
    ],
)
def test_bad_parameter_values_name_the_parameter_and_what_is_allowed(name, params, named):
    with pytest.raises(EffbenchError, match=named):
        get_metric(name, **params)


@pytest.mark.parametrize("name", ALL_METRICS)
def test_every_metric_carries_its_metadata_and_json_ready_params(name):
    metric = get_metric(name)
    assert metric.name == name
    assert isinstance(metric.version, int) and metric.version >= 1
    assert metric.direction in ("higher", "lower")
    low, high = metric.range
    assert low < high
    assert metric.citation.lstrip().startswith("@") and metric.citation.rstrip().endswith("}")
    assert metric.family
    assert json.loads(json.dumps(metric.params)) == metric.params
    assert set(metric.params) == set(type(metric).defaults)


def test_params_are_recorded_as_given():
    metric = get_metric("necessity", mode="mask", bins=[0.1, 0.5])
    assert metric.params == {"mode": "mask", "bins": [0.1, 0.5]}


def test_importing_the_metrics_does_not_import_torch():
    script = (
        "import sys\n"
        "from effbench.metrics import get_metric, metrics\n"
        "instances = [get_metric(name) for name in metrics.names()]\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "print(len(instances))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(len(ALL_METRICS))


# ---- shared conventions -----------------------------------------------------------------------------


def test_top_k_is_exact_on_the_decimal_fraction():
    assert top_k(0.07, 100) == 7  # 0.07 * 100 == 7.000000000000001 in floating point
    assert top_k(0.29, 100) == 29
    assert top_k(0.01, 5) == 1  # at least one token
    assert top_k(0.5, 3) == 2
    assert top_k(1.0, 17) == 17
    assert grid_ks(4, [0.01, 0.02, 0.03, 0.05, 0.07, 0.1, 0.15, 0.2, 0.3, 0.5, 0.7, 1.0]) == [1, 2, 3, 4]
    assert grid_ks(100, [0.01, 0.02, 0.03, 0.05, 0.07]) == [1, 2, 3, 5, 7]


def test_ranking_is_signed_and_ties_go_to_the_earlier_position():
    positions = np.array([1, 2, 3, 4, 5])
    scores = np.array([0.5, -0.9, 0.5, 0.7, 0.0])
    assert rank_positions(positions, scores).tolist() == [4, 1, 3, 5, 2]


def test_attribution_of_the_wrong_shape_is_a_clear_error(golden):
    model, batch, _ = golden
    wrong = Attribution(scores=torch.zeros(2, 3), explainer="broken", version=1)
    with pytest.raises(EffbenchError, match="explainer 'broken' has shape"):
        get_metric("necessity").compute(PerturbationEngine(model), batch, wrong)


# ---- golden values ------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["remove", "mask"])
@pytest.mark.parametrize("name", ID_METRICS)
def test_golden_values_through_the_engine(name, mode, golden):
    model, batch, attribution = golden
    params = {"mode": mode} if "mode" in metrics.get(name).defaults else {}
    result = get_metric(name, **params).compute(PerturbationEngine(model), batch, attribution)
    expected_values, expected_flags = GOLDEN_EXPECTED[name]
    assert result.values.dtype == np.float64 and result.values.shape == (2,)
    np.testing.assert_allclose(result.values, expected_values, rtol=0, atol=1e-9)
    assert result.flags == expected_flags


def test_the_cards_golden_values_are_the_engine_golden_example():
    """The evaluate cards' first golden case restates GOLDEN_EXPECTED: keep them the same numbers."""
    import re

    import yaml

    for name, (expected_values, _) in GOLDEN_EXPECTED.items():
        text = (REPO_ROOT / "metrics" / name / "README.md").read_text(encoding="utf-8")
        cases = yaml.safe_load(re.search(r"## Golden values\n.*?```yaml\n(.*?)```", text, flags=re.DOTALL).group(1))
        np.testing.assert_allclose(cases[0]["expected"]["per_example"][:2], expected_values, rtol=0, atol=1e-12)


# ---- ERASER's convention ------------------------------------------------------------------------------


def eraser_aopc(instances: list[dict], thresholds: list[float], key: str) -> float:
    """ERASER's reference scorer (rationale_benchmark/metrics.py, `_instances_aopc`), restated: per instance the
    predicted class's probability on the full input minus that on each thresholded input; the plain average."""
    deltas = []
    for instance in instances:
        predicted = instance["classification"]
        full = instance["classification_scores"][predicted]
        by_threshold = sorted(instance["thresholded_scores"], key=lambda entry: entry["threshold"])
        deltas.append([full - entry[key][predicted] for entry in by_threshold if entry["threshold"] in thresholds])
    return float(np.average(np.array(deltas)))


def test_necessity_and_sufficiency_equal_erasers_scorer_on_fixed_probabilities():
    rng = np.random.default_rng(7)
    bins = [0.01, 0.05, 0.10, 0.20, 0.50]
    lengths = [8, 13, 20, 3]
    vocabulary = [token for token in range(1, 99) if token not in SPECIAL]
    weights = {token: float(rng.uniform(0.0, 0.04)) for token in vocabulary}
    model = AdditiveModel(weights, bias=0.1)
    rows = [[int(t) for t in rng.choice(vocabulary, size=m, replace=False)] for m in lengths]
    scores = [rng.normal(size=m).round(2).tolist() for m in lengths]  # rounding makes ties, broken by position
    instances = []
    for row, row_scores in zip(rows, scores):
        p1 = model.probability(row)
        predicted = int(p1 > 0.5)
        order = sorted(range(len(row)), key=lambda j: (-row_scores[j], j))
        thresholded = []
        for q in bins:
            k = max(1, math.ceil(round(q * len(row), 9)))
            top = set(order[:k])
            without = model.probability([t for j, t in enumerate(row) if j not in top])
            only = model.probability([t for j, t in enumerate(row) if j in top])
            thresholded.append(
                {
                    "threshold": q,
                    "comprehensiveness_classification_scores": {0: 1 - without, 1: without},
                    "sufficiency_classification_scores": {0: 1 - only, 1: only},
                }
            )
        instances.append({"classification": predicted, "classification_scores": {0: 1 - p1, 1: p1}, "thresholded_scores": thresholded})

    batch = make_batch([[CLS, *row, SEP] for row in rows], targets=[instance["classification"] for instance in instances])
    assert len(set(batch.targets.tolist())) == 2, "the check should cover both predicted classes"
    attribution = make_attribution(batch, scores)
    engine = PerturbationEngine(model)
    necessity = get_metric("necessity").compute(engine, batch, attribution).values
    sufficiency = get_metric("sufficiency").compute(engine, batch, attribution).values
    assert necessity.mean() == pytest.approx(eraser_aopc(instances, bins, "comprehensiveness_classification_scores"), abs=1e-12)
    assert sufficiency.mean() == pytest.approx(eraser_aopc(instances, bins, "sufficiency_classification_scores"), abs=1e-12)


# ---- a toy model with a known answer --------------------------------------------------------------------

KEY = 42


@pytest.mark.parametrize("mode", ["remove", "mask"])
def test_an_oracle_for_the_key_token_wins_and_random_does_not(mode):
    """The model's prediction hangs on token KEY: ranking it first must win necessity, sufficiency and both
    minimal metrics; a seeded random scorer must not."""
    rng = np.random.default_rng(0)
    others = [token for token in range(1, 99) if token not in SPECIAL | {KEY}]
    model = AdditiveModel({KEY: 0.76, **{token: 0.001 for token in others}}, bias=0.12)
    m = 20
    rows = []
    for _ in range(8):
        row = [int(t) for t in rng.choice(others, size=m, replace=False)]
        row[int(rng.integers(m))] = KEY
        rows.append([CLS, *row, SEP])
    batch = make_batch(rows, targets=[1] * len(rows))
    oracle = Attribution(scores=(batch.input_ids == KEY).float(), explainer="oracle", version=1)
    generator = torch.Generator().manual_seed(0)
    random = Attribution(
        scores=torch.randn(batch.input_ids.shape, generator=generator) * batch.scorable_mask, explainer="random", version=1
    )
    engine = PerturbationEngine(model)

    def mean(name: str, attribution: Attribution) -> float:
        return float(get_metric(name, mode=mode).compute(engine, batch, attribution).values.mean())

    assert mean("necessity", oracle) > mean("necessity", random) + 0.2
    assert mean("sufficiency", oracle) < mean("sufficiency", random) - 0.2
    assert mean("min_sufficient", oracle) == pytest.approx(1 / m)
    assert mean("min_necessary", oracle) == pytest.approx(1 / m)
    assert mean("min_sufficient", random) > 2 / m
    assert mean("min_necessary", random) > 2 / m


# ---- undefined values and flags ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ID_METRICS)
def test_examples_without_tokens_or_with_nan_scores_give_nan_and_a_flag(name, golden):
    model, _, _ = golden
    batch = make_batch([[CLS, 11, 12, 13, 14, SEP], [CLS, SEP], [CLS, 11, 12, SEP]], targets=[1, 1, 0], evidence_token=13)
    attribution = make_attribution(batch, [[0.3, 0.4, -0.2, 0.1], [], [float("nan"), 1.0]])
    result = get_metric(name).compute(PerturbationEngine(model), batch, attribution)
    assert np.isfinite(result.values[0])
    assert np.isnan(result.values[1]) and result.flags[1] == ["no_scorable_tokens"]
    assert np.isnan(result.values[2]) and result.flags[2] == ["non_finite_scores"]


def test_faithfulness_flags_a_single_token_and_min_necessary_flags_never_flipping():
    model = AdditiveModel({11: 0.01, 12: 0.01}, bias=0.9)  # nothing can flip class 1
    batch = make_batch([[CLS, 11, SEP], [CLS, 11, 12, SEP]], targets=[1, 1])
    attribution = make_attribution(batch, [[1.0], [0.5, 0.2]])
    engine = PerturbationEngine(model)
    faithfulness = get_metric("faithfulness").compute(engine, batch, attribution)
    assert faithfulness.values[0] == 0.0 and faithfulness.flags[0] == ["fewer_than_2_tokens"]
    min_necessary = get_metric("min_necessary").compute(engine, batch, attribution)
    assert min_necessary.values.tolist() == [1.0, 1.0]
    assert min_necessary.flags == [["never_flips"], ["never_flips"]]
    min_sufficient = get_metric("min_sufficient").compute(engine, batch, attribution)
    assert min_sufficient.values.tolist() == [1.0, 0.5]  # m = 1: only the full input; m = 2: one token keeps it
    assert min_sufficient.flags == [["only_full_input"], []]


# ---- sharing passes ----------------------------------------------------------------------------------------


def test_explainers_with_the_same_top_k_share_passes_and_necessity_and_sufficiency_do_not(golden):
    model, batch, attribution = golden
    engine = PerturbationEngine(model)
    necessity = get_metric("necessity")
    first = necessity.compute(engine, batch, attribution)
    # full inputs (2) + the distinct top-k sets: {12}, {12, 11} and {11}, {11, 12}
    assert engine.sequences_evaluated == 6
    calls = engine.forward_calls  # a chunk per (example, family): full inputs, sets
    same_ranking = Attribution(scores=attribution.scores * 3 + 1, explainer="other", version=1)
    second = necessity.compute(engine, batch, same_ranking)
    assert engine.sequences_evaluated == 6 and engine.forward_calls == calls
    np.testing.assert_array_equal(first.values, second.values)
    get_metric("sufficiency").compute(engine, batch, attribution)
    assert engine.sequences_evaluated == 6 + 4  # its own perturbations, not the full inputs again


def test_leave_one_out_passes_are_computed_once_for_all_explainers(golden):
    model, batch, attribution = golden
    engine = PerturbationEngine(model)
    faithfulness = get_metric("faithfulness")
    faithfulness.compute(engine, batch, attribution)
    assert engine.sequences_evaluated == 2 + 4 + 3  # full inputs and every scorable token left out
    other = Attribution(scores=torch.randn(batch.input_ids.shape, generator=torch.Generator().manual_seed(1)), explainer="random", version=1)
    faithfulness.compute(engine, batch, other)
    assert engine.sequences_evaluated == 9
    # necessity's sets are a family of their own ({12}, {12, 11}, {11}, {11, 12}), so that the leave-one-out
    # results never depend on which other metrics or explainers ran first
    get_metric("necessity").compute(engine, batch, attribution)
    assert engine.sequences_evaluated == 9 + 4
