"""The command line: clear one-line errors for bad input, tables for output."""


from effbench.cli import main


def run_cli(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_unknown_task_suggests_and_lists(capsys, toy_env):
    code, _, err = run_cli(capsys, "train", "--task", "mr-sentence", "--kind", "tiny")
    assert code == 2
    assert "Did you mean 'mr-sentences'" in err and "bbc-news" in err
    assert "Traceback" not in err


def test_unknown_explainer_and_metric_suggest(capsys, toy_env):
    code, _, err = run_cli(capsys, "run", "--task", "toy", "--model-kind", "tiny", "--explainer", "raw_atention")
    assert code == 2 and "Did you mean 'raw_attention'" in err
    code, _, err = run_cli(capsys, "run", "--task", "toy", "--model-kind", "tiny", "--metric", "necesity")
    assert code == 2 and "Did you mean 'necessity'" in err


def test_bad_perturbation_mode_names_the_allowed_ones(capsys, toy_env):
    code, _, err = run_cli(capsys, "run", "--task", "toy", "--perturbation", "blur")
    assert code == 2 and "'remove', 'mask'" in err and "--perturbation" in err


def test_tasks_lists_rows_classes_splits_and_license(capsys, toy_env):
    code, out, _ = run_cli(capsys, "tasks", "toy")
    assert code == 0
    header, _, row = out.strip().splitlines()[:3]
    assert "rows" in header and "license" in header
    assert "toy" in row and "1600" in row and "CC0-1.0" in row


def records_in(output):
    import json

    return sorted((json.loads(path.read_text()) for path in output.rglob("record.json")),
                  key=lambda r: r["explainer"]["name"])


def test_repeated_and_listed_flags_both_give_every_explainer_and_metric(capsys, toy_env, tmp_path):
    repeated, listed = tmp_path / "repeated", tmp_path / "listed"
    code, _, err = run_cli(capsys, "run", "--task", "toy", "--model-kind", "tiny", "--limit", "3", "--quiet",
                           "--explainer", "grad_x_input", "--explainer", "random", "--explainer", "saliency",
                           "--metric", "necessity", "--metric", "sparsity", "--output", str(repeated))
    assert code == 0, err
    code, _, err = run_cli(capsys, "run", "--task", "toy", "--model-kind", "tiny", "--limit", "3", "--quiet",
                           "--explainer", "grad_x_input", "random", "saliency", "--metric", "necessity", "sparsity",
                           "--output", str(listed))
    assert code == 0, err
    for output in (repeated, listed):
        records = records_in(output)
        assert [r["explainer"]["name"] for r in records] == ["grad_x_input", "random", "saliency"]
        assert all(set(r["results"]) == {"necessity", "sparsity"} for r in records)


def test_explainer_params_target_one_explainer_or_every_one_that_has_them(capsys, toy_env, tmp_path):
    output = tmp_path / "runs"
    code, _, err = run_cli(capsys, "run", "--task", "toy", "--model-kind", "tiny", "--limit", "2", "--quiet",
                           "--explainer", "raw_attention", "efficient_attention", "saliency", "--metric", "sparsity",
                           "--explainer-param", "efficient_attention.canonical=minnorm",
                           "--explainer-param", "layer=0", "--output", str(output))
    assert code == 0, err
    params = {r["explainer"]["name"]: r["explainer"]["params"] for r in records_in(output)}
    assert params["efficient_attention"]["canonical"] == "minnorm" and params["efficient_attention"]["layer"] == 0
    assert params["raw_attention"]["layer"] == 0 and "canonical" not in params["raw_attention"]
    assert "layer" not in params["saliency"]  # it has no `layer`: an unqualified parameter skips it
    code, _, err = run_cli(capsys, "run", "--task", "toy", "--explainer", "saliency", "--explainer-param", "layer=0")
    assert code == 2 and "no explainer of this run (saliency) has a parameter 'layer'" in err
    code, _, err = run_cli(capsys, "run", "--task", "toy", "--explainer", "saliency",
                           "--explainer-param", "random.seed=3")
    assert code == 2 and "'random' is not an explainer of this run" in err


def test_version_lists_and_formats(capsys):
    import json

    import effbench

    code, out, _ = run_cli(capsys, "--version")
    assert code == 0 and out.strip() == f"effbench {effbench.__version__}"
    code, out, _ = run_cli(capsys, "explainers", "--format", "json")
    rows = {row["name"]: row for row in json.loads(out)}
    assert code == 0 and rows["efficient_attention"]["citation"] == "naim2024explaining"
    assert "canonical='sparse'" in rows["efficient_attention"]["parameters"]
    assert [rows[name]["citation"] for name in ("lime", "kernel_shap", "deeplift")] == \
        ["ribeiro2016why", "lundberg2017unified", "shrikumar2017learning"]
    assert rows["lime"]["parameters"] == "samples=500, kernel_width=0.25, alpha=1.0, perturbation='remove', seed=0"
    assert rows["kernel_shap"]["parameters"] == "samples=500, perturbation='remove', seed=0"
    assert rows["deeplift"]["parameters"] == "baseline='pad'"
    code, out, _ = run_cli(capsys, "metrics", "--format", "csv")
    header, *lines = out.strip().splitlines()
    assert header.split(",")[:2] == ["name", "version"] and any(line.startswith("necessity,") for line in lines)


def test_each_subcommand_has_its_own_help_with_defaults(capsys):
    code, out, _ = run_cli(capsys, "leaderboard", "run", "--help")
    assert code == 0 and "usage: effbench leaderboard run" in out and "--model PATH_OR_HUB_ID" in out
    code, out, _ = run_cli(capsys, "run", "--help")
    assert "(default: 16)" in out and "(default: remove)" in out and "EXPLAINER.NAME=VALUE" in out


def test_train_takes_model_kind_and_the_old_kind_flag_with_a_warning(capsys, toy_env):
    code, out, err = run_cli(capsys, "train", "--task", "toy", "--model-kind", "tiny")
    assert code == 0 and "toy (tiny): test accuracy" in out and "deprecated" not in err
    code, out, err = run_cli(capsys, "train", "--task", "toy", "--kind", "tiny")
    assert code == 0 and "toy (tiny): test accuracy" in out and "--kind is deprecated; use --model-kind" in err


def test_run_json_is_one_document(capsys, toy_env, tmp_path):
    import json

    code, out, err = run_cli(capsys, "run", "--task", "toy", "--model-kind", "tiny", "--limit", "2", "--quiet",
                             "--explainer", "random", "--metric", "sparsity", "--format", "json",
                             "--output", str(tmp_path))
    [record] = json.loads(out)
    assert code == 0 and record["explainer"]["name"] == "random" and "run records written under" in err


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
