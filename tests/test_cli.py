"""The command line: clear one-line errors for bad input, tables for output."""

import pytest

from effbench.cli import main


def run_cli(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_unknown_task_suggests_and_lists(capsys, toy_env):
    code, _, err = run_cli(capsys, "train", "--task", "mr-sentence", "--kind", "tiny")
    assert code == 2
    assert "Did you mean 'mr-sentences'?" in err and "bbc-news" in err
    assert "Traceback" not in err


def test_unknown_explainer_and_metric_suggest(capsys, toy_env):
    code, _, err = run_cli(capsys, "run", "--task", "toy", "--model-kind", "tiny", "--explainer", "raw_atention")
    assert code == 2 and "Did you mean 'raw_attention'" in err
    code, _, err = run_cli(capsys, "run", "--task", "toy", "--model-kind", "tiny", "--metric", "necesity")
    assert code == 2 and "Did you mean 'necessity'" in err


def test_bad_perturbation_mode_names_the_allowed_ones(capsys, toy_env):
    code, _, err = run_cli(capsys, "run", "--task", "toy", "--perturbation", "blur")
    assert code == 2 and "remove, mask" in err


def test_tasks_lists_rows_classes_splits_and_license(capsys, toy_env):
    code, out, _ = run_cli(capsys, "tasks", "toy")
    assert code == 0
    header, _, row = out.strip().splitlines()[:3]
    assert "rows" in header and "license" in header
    assert "toy" in row and "1600" in row and "CC0-1.0" in row


def test_tasks_lists_a_broken_card_beside_the_good_ones(capsys, toy_env, tmp_path, monkeypatch):
    import os

    (tmp_path / "broken.yaml").write_text("name: broken\nsource: [unclosed\n")
    monkeypatch.setenv("EFFBENCH_TASK_DIRS", os.pathsep.join([str(toy_env["tasks"]), str(tmp_path)]))
    code, out, _ = run_cli(capsys, "tasks", "toy", "broken")
    assert code == 0
    header, _, good, broken = out.strip().splitlines()
    assert "status" in header
    assert good.startswith("| toy ") and "1600" in good and "| ok " in good
    assert broken.startswith("| broken ") and "broken: " in broken and "not valid UTF-8 YAML" in broken
