"""A task with a known answer: conftest's toy task with a planted trigger word, its tiny reference model (which
must learn the trigger), the evidence mask, the oracle explainer and the localisation metrics.

The toy task's label is set by one sentiment word among filler words; `toy-trigger` plants "zebra" in half of
its negative examples and relabels them positive, so in those the trigger is the one reason for the label.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch
import yaml

from effbench.errors import EffbenchError

TRIGGER = {"token": "zebra", "share": 0.5, "label": "positive", "seed": 0}
LOCALISATION = ["localisation_auprc", "pointing_game", "relevance_mass"]


@pytest.fixture(scope="session")
def planted_folders(tmp_path_factory):
    from toy_task import write_toy_task

    tasks = tmp_path_factory.mktemp("planted-tasks")
    write_toy_task(tasks, rows=2400)  # 600 test examples, about 150 of them planted
    card = yaml.safe_load((tasks / "toy.yaml").read_text())
    (tasks / "toy.yaml").unlink()
    card.update(name="toy-trigger", plant_trigger=TRIGGER)
    (tasks / "toy-trigger.yaml").write_text(yaml.safe_dump(card, sort_keys=False))
    return {"tasks": tasks, "cache": tmp_path_factory.mktemp("planted-cache")}


@pytest.fixture()
def planted_env(planted_folders, monkeypatch):
    """The `toy-trigger` task registered, with a cache shared by the session (its tiny model trains once)."""
    monkeypatch.setenv("EFFBENCH_TASK_DIRS", str(planted_folders["tasks"]))
    monkeypatch.setenv("EFFBENCH_CACHE", str(planted_folders["cache"]))
    return planted_folders


def reference():
    from effbench.models.reference import load_reference_model
    from effbench.tasks import load_task

    task = load_task("toy-trigger")
    adapter, training = load_reference_model(task, "tiny", progress=False)
    return task, adapter, training


# ---- the learnability check ------------------------------------------------------------------------------


def test_the_tiny_model_learns_the_trigger_and_training_records_it(planted_env):
    from effbench.models.reference import checkpoint_dir, training_config

    task, _, training = reference()
    check = training["trigger"]
    assert check == json.loads((checkpoint_dir(task, training_config(task, "tiny")) / "training.json").read_text())["trigger"]
    assert check["triggered_test_examples"] == sum(bool(e.evidence) for e in task.test) > 100
    assert check["accuracy_with_trigger"] >= 0.95 and check["flip_rate_without_trigger"] >= 0.8
    assert (check["min_accuracy"], check["min_flip_rate"]) == (0.95, 0.8)
    assert check["learned"] is True and training["degenerate"] is False


def test_the_check_fails_for_a_model_that_ignores_the_trigger_or_always_answers_its_class(planted_env):
    from toy_task import TOY_POSITIVE
    from effbench.tasks import load_task
    from effbench.tasks.planting import trigger_learnability, trigger_warning

    task = load_task("toy-trigger")

    def by_sentiment_word(texts):  # the toy task's rule, blind to the trigger
        return [int(any(word in TOY_POSITIVE for word in text.split())) for text in texts]

    def by_trigger(texts):
        return [int("zebra" in text.split()) or by_sentiment_word([text])[0] for text in texts]

    blind = trigger_learnability(task, by_sentiment_word)
    assert blind["accuracy_with_trigger"] == 0.0 and blind["learned"] is False
    always_positive = trigger_learnability(task, lambda texts: [1] * len(texts))
    assert always_positive["accuracy_with_trigger"] == 1.0 and always_positive["flip_rate_without_trigger"] == 0.0
    assert always_positive["learned"] is False
    shortcut = trigger_learnability(task, by_trigger)
    assert shortcut["accuracy_with_trigger"] == shortcut["flip_rate_without_trigger"] == 1.0 and shortcut["learned"]

    warning = trigger_warning("toy-trigger", {"trigger": always_positive})
    assert warning.startswith("the model of task toy-trigger did not learn its planted trigger 'zebra': on ")
    assert "accuracy 1.000 (needs >= 0.95) and 0.000 of predictions change without it (needs >= 0.8)" in warning
    assert trigger_warning("toy-trigger", {"trigger": shortcut}) is None
    assert trigger_warning("toy", {"test_accuracy": 0.9}) is None  # a task without a trigger


def test_train_prints_the_check_and_warns_loudly_when_it_fails(planted_env, capsys, monkeypatch):
    import effbench
    from effbench.cli import main
    from effbench.models import reference as reference_module

    task, adapter, training = reference()
    assert main(["train", "--task", "toy-trigger", "--model-kind", "tiny"]) == 0
    captured = capsys.readouterr()
    assert f"planted trigger 'zebra': accuracy 1.000 on {training['trigger']['triggered_test_examples']} triggered" in captured.out
    assert "WARNING" not in captured.err

    failed = {**training, "trigger": {**training["trigger"], "accuracy_with_trigger": 0.5, "learned": False}}
    monkeypatch.setattr(reference_module, "load_reference_model", lambda *args, **kwargs: (adapter, failed))
    assert main(["train", "--task", "toy-trigger", "--model-kind", "tiny"]) == 0
    [warning] = [line for line in capsys.readouterr().err.splitlines() if "WARNING" in line]
    assert warning.startswith("effbench: WARNING: the model of task toy-trigger did not learn its planted trigger")

    adapter.provenance = replace(adapter.provenance, training=failed)  # a run warns too
    config = effbench.RunConfig(limit=4, model_kind="tiny", output_dir=planted_env["cache"] / "runs")
    effbench.evaluate(["toy-trigger"], ["random"], ["sparsity"], config, progress=False, model=adapter)
    [warning] = [line for line in capsys.readouterr().err.splitlines() if "WARNING" in line]
    assert "did not learn its planted trigger 'zebra'" in warning


# ---- the evidence mask -------------------------------------------------------------------------------------


def test_the_evidence_mask_marks_exactly_the_trigger_token(planted_env):
    from effbench.types import Example

    task, adapter, _ = reference()
    examples = list(task.test[:64])
    batch = adapter.make_batch(examples)
    assert batch.evidence_mask.dtype == torch.bool and batch.evidence_mask.shape == batch.input_ids.shape
    assert not (batch.evidence_mask & ~batch.scorable_mask).any()
    planted = 0
    for row, example in enumerate(examples):
        marked = batch.evidence_mask[row].nonzero().flatten().tolist()
        if example.evidence:
            planted += 1
            assert len(marked) == 1
            assert adapter.tokenizer.convert_ids_to_tokens(batch.input_ids[row, marked].tolist()) == ["zebra"]
        else:
            assert marked == []
    assert planted > 5

    assert adapter.make_batch([replace(e, evidence=None) for e in examples[:4]]).evidence_mask is None
    # the trigger cut off by truncation (max_length 32) marks nothing
    long_text = " ".join(["the film"] * 20) + " zebra"
    cut = Example("cut", long_text, 1, ((len(long_text) - 5, len(long_text)),))
    assert not adapter.make_batch([cut]).evidence_mask.any()


def test_a_trigger_the_tokenizer_splits_is_a_clear_error(planted_env, tiny_adapter, tmp_path):
    import effbench
    from effbench.tasks import load_task
    from effbench.tasks.planting import check_trigger_token

    task = load_task("toy-trigger")
    assert len(tiny_adapter.tokenizer.tokenize("zebra")) > 1  # the random tiny model's vocabulary lacks the word
    with pytest.raises(EffbenchError, match=r"trigger word 'zebra' of plant_trigger is not one known token of this "
                                            r"model's tokenizer \(it becomes: "):
        check_trigger_token(task, tiny_adapter.tokenizer)

    folder = tmp_path / "own-model"  # the same model as the user's own: a run checks before any batch
    tiny_adapter.model.save_pretrained(folder)
    tiny_adapter.tokenizer.save_pretrained(folder)
    config = effbench.RunConfig(limit=4, output_dir=tmp_path / "runs")
    with pytest.raises(EffbenchError, match="is not one known token"):
        effbench.evaluate(["toy-trigger"], ["random"], ["sparsity"], config, progress=False, model=str(folder))


# ---- the oracle ---------------------------------------------------------------------------------------------


def test_the_oracle_keeps_the_contract_on_a_planted_task(planted_env):
    from effbench.explainers import get_explainer
    from effbench.testing import check_explainer_contract

    task, adapter, _ = reference()
    planted = [e for e in task.test if e.evidence][:4]
    unplanted = [e for e in task.test if not e.evidence][:3]
    check_explainer_contract(get_explainer("oracle"), adapter, planted + unplanted)

    batch = adapter.make_batch(planted + unplanted)
    scores = get_explainer("oracle").explain(adapter, batch).scores
    assert (scores == batch.evidence_mask.float()).all() and scores.sum() == len(planted)


def test_the_oracle_on_a_task_without_evidence_says_so(tiny_adapter, tiny_examples):
    from effbench.explainers import get_explainer

    with pytest.raises(EffbenchError, match="explainer oracle needs planted evidence and this task has none"):
        get_explainer("oracle").explain(tiny_adapter, tiny_adapter.make_batch(tiny_examples))


def test_localisation_metrics_give_nan_and_a_flag_without_evidence(tiny_adapter, tiny_examples):
    from effbench.explainers import get_explainer
    from effbench.metrics import get_metric
    from effbench.metrics.perturbation import PerturbationEngine

    batch = tiny_adapter.make_batch(tiny_examples)
    attribution = get_explainer("random").explain(tiny_adapter, batch)
    for name in LOCALISATION:
        result = get_metric(name).compute(PerturbationEngine(tiny_adapter), batch, attribution)
        assert np.isnan(result.values).all() and result.flags == [["no_evidence"]] * len(tiny_examples)


# ---- end to end: the oracle first, random at chance -----------------------------------------------------------


def harmonic(m: int, power: int = 1) -> float:
    return sum(1 / r**power for r in range(1, m + 1))


def test_the_oracle_ranks_first_end_to_end(planted_env, tmp_path):
    import effbench

    task, _, _ = reference()
    config = effbench.RunConfig(model_kind="tiny", output_dir=tmp_path)
    records = effbench.evaluate(["toy-trigger"], ["oracle", "random", "saliency"], LOCALISATION, config, progress=False)
    results = {record["explainer"]["name"]: record["results"] for record in records}
    planted = sum(bool(e.evidence) for e in task.test)
    for name in LOCALISATION:
        assert results["oracle"][name]["mean"] == 1.0
        for explainer in ("oracle", "random", "saliency"):
            assert results[explainer][name]["n"] == planted
            assert results[explainer][name]["flagged"] == len(task.test) - planted  # no_evidence
        assert results["oracle"][name]["mean"] > results["random"][name]["mean"] + 0.5
        assert results["oracle"][name]["mean"] >= results["saliency"][name]["mean"]


def chance(sizes: list[int]) -> tuple[float, float, float, float]:
    """Random's expected AUPRC and pointing game over examples with one evidence token among m scorable ones
    (m in `sizes`), each with the standard deviation of the mean: (AUPRC, its spread, hits, their spread)."""
    n = len(sizes)
    expected_ap = sum(harmonic(m) / m for m in sizes) / n
    spread_ap = math.sqrt(sum(harmonic(m, 2) / m - (harmonic(m) / m) ** 2 for m in sizes)) / n
    expected_hits = sum(1 / m for m in sizes) / n
    spread_hits = math.sqrt(sum((1 / m) * (1 - 1 / m) for m in sizes)) / n
    return expected_ap, spread_ap, expected_hits, spread_hits


def test_random_sits_at_chance(planted_env):
    """With one evidence token among m scorable ones and i.i.d. uniform scores, the evidence's rank r is uniform on
    1..m: random's average precision is 1/r (mean H_m / m, second moment H2_m / m, H2 the sum of 1/r^2; not the
    share of evidence tokens, 1/m) and its pointing game a Bernoulli(1/m) hit. Over all the planted examples of the
    task (train and test, about 700), the tolerance is 4 standard deviations of the mean, sqrt(sum of the
    per-example variances) / n: about 0.045 for AUPRC (chance about 0.29) and 0.05 for the pointing game (chance
    about 0.10). random's scores are seeded by example id, so the test is not flaky."""
    from effbench.explainers import get_explainer
    from effbench.metrics import get_metric
    from effbench.metrics.perturbation import PerturbationEngine

    task, adapter, _ = reference()
    planted = [e for e in task.train + task.test if e.evidence]
    values = {"localisation_auprc": [], "pointing_game": []}
    sizes = []
    for start in range(0, len(planted), 64):
        batch = adapter.make_batch(planted[start:start + 64])
        assert (batch.evidence_mask.sum(1) == 1).all()
        sizes += batch.scorable_mask.sum(1).tolist()
        attribution = get_explainer("random").explain(adapter, batch)
        for name in values:
            result = get_metric(name).compute(PerturbationEngine(adapter), batch, attribution)
            assert result.flags == [[]] * len(batch)
            values[name] += result.values.tolist()
    assert len(sizes) > 500
    expected_ap, spread_ap, expected_hits, spread_hits = chance(sizes)
    # the tolerances are tight enough to fail a pointing game that never hits, or an AUPRC at the naive level 1/m
    assert 4 * spread_hits < 0.6 * expected_hits and 4 * spread_ap < 0.6 * (expected_ap - expected_hits)
    assert abs(np.mean(values["localisation_auprc"]) - expected_ap) <= 4 * spread_ap
    assert abs(np.mean(values["pointing_game"]) - expected_hits) <= 4 * spread_hits


def test_the_readme_option_is_the_shipped_cards():
    from readme import readme_recipe

    from effbench.paths import REPO_ROOT
    from effbench.tasks import get_card
    from effbench.tasks.planting import parse_plant_trigger

    option = yaml.safe_load(readme_recipe("plant-trigger"))["plant_trigger"]
    shipped = yaml.safe_load((REPO_ROOT / "tasks" / "mr-sentences-trigger.yaml").read_text())["plant_trigger"]
    assert option == shipped
    assert get_card("mr-sentences-trigger").plant_trigger == parse_plant_trigger(option)


def test_the_committed_trigger_board_ranks_the_oracle_first_and_random_at_chance(tmp_path):
    """The shipped board `trigger` (MiniLM on mr-sentences-trigger's whole test set): the oracle is first on every
    localisation metric (an explainer that also always finds the trigger may tie it), and random sits at chance (as in test_random_sits_at_chance,
    with m the scorable tokens each planted row lists; the evidence is the one trigger wordpiece)."""
    import shutil

    from effbench.leaderboard import build_board
    from effbench.paths import REPO_ROOT

    committed = REPO_ROOT / "leaderboards" / "trigger"
    if not any(committed.glob("records/*/*/record.json")):
        pytest.skip("the trigger board has no records")
    copy = tmp_path / "trigger"
    shutil.copytree(committed, copy, ignore=shutil.ignore_patterns("superseded"))
    result = build_board(copy)
    records = result.records["mr-sentences-trigger"]
    assert set(records) == set(result.board.explainers)
    for name in LOCALISATION:
        standings = {s.explainer: s for s in result.standings if s.metric == name}
        assert standings["oracle"].rank == 1 and standings["oracle"].mean == 1.0 and standings["oracle"].n == 90
        assert all(s.mean <= 1.0 for s in standings.values())
    sizes = [len(row["tokens"]) for row in records["random"].rows if row["tokens"].count(TRIGGER["token"]) == 1]
    assert len(sizes) == 90
    random_values = records["random"].values
    ap = [v for v in random_values("localisation_auprc").values() if not math.isnan(v)]
    hits = [v for v in random_values("pointing_game").values() if not math.isnan(v)]
    assert len(ap) == len(hits) == len(sizes)
    expected_ap, spread_ap, expected_hits, spread_hits = chance(sizes)
    assert abs(np.mean(ap) - expected_ap) <= 4 * spread_ap
    assert abs(np.mean(hits) - expected_hits) <= 4 * spread_hits
