"""`--device` and `--dtype`: the solver and every tensor on the device they are given, CUDA runs equal to CPU
runs, narrower dtypes recorded, close to float32, and never ranked with another dtype on a board.

The CUDA tests run where torch sees a GPU (`pytest -m '' -k cuda tests/test_device.py tests/test_out_of_memory.py`).
"""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from test_efficient_attention import LONG_TEXTS, SHORT_TEXT, sharp_tiny_adapter  # noqa: F401 (a fixture)

from effbench.errors import EffbenchError
from effbench.explainers.attention import full_spans, head_bases
from effbench.explainers.efficient import ConstrainedRows, solve_sparse
from effbench.types import Example

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
ALL_EXPLAINERS = ["random", "raw_attention", "attention_rollout", "effective_attention", "efficient_attention",
                  "attention_norm", "saliency", "grad_x_input", "integrated_gradients", "leave_one_out"]


def long_examples() -> list[Example]:
    examples = [Example(id=f"long-{i}", text=text, label=i % 2) for i, text in enumerate(LONG_TEXTS)]
    return examples + [Example(id="short", text=SHORT_TEXT, label=1)]


@pytest.fixture(scope="module")
def lp_problems(sharp_tiny_adapter):  # noqa: F811
    """Every row of both layers of the long examples as linear programs: most have rank([T | 1]) < n."""
    adapter = sharp_tiny_adapter
    batch = adapter.make_batch(long_examples())
    lengths = batch.attention_mask.sum(1).tolist()
    problems = []
    for layer in range(adapter.num_layers):
        bases = head_bases(adapter, batch.forward, layer, full_spans(lengths), list(range(adapter.num_heads)))
        probs = batch.forward.attentions[layer].double().numpy()
        for example, n in enumerate(lengths):
            for head in range(adapter.num_heads):
                rows = probs[example, head, :n, :n]
                problems.append(ConstrainedRows(basis=bases.with_ones[example][head], rows=rows / rows.sum(1, keepdims=True)))
    assert sum(problem.basis.shape[1] < problem.basis.shape[0] for problem in problems) > len(problems) / 2
    return problems


# ---- the solver's device -------------------------------------------------------------------------------


def test_the_lp_solver_makes_every_tensor_on_the_device_it_is_given(lp_problems):
    """With torch's default device set to "meta", any tensor the solver made without naming its device
    would hold no data, and the solve would fail: it gives the CPU's rows, bit for bit."""
    expected = solve_sparse(lp_problems)
    with torch.device("meta"):
        assert torch.zeros(1).device.type == "meta"
        got = solve_sparse(lp_problems, device="cpu")
    assert all(np.array_equal(first, second) for first, second in zip(expected, got))


@needs_cuda
def test_the_lp_solver_gives_the_cpu_rows_on_cuda(lp_problems):
    cpu = solve_sparse(lp_problems, device="cpu")
    cuda = solve_sparse(lp_problems, device="cuda")
    differences = [float(np.abs(first - second).max()) for first, second in zip(cpu, cuda)]
    assert max(differences) <= 1e-8, max(differences)


# ---- a run on CUDA -------------------------------------------------------------------------------------


@needs_cuda
def test_every_explainer_scores_alike_on_cuda_and_cpu(sharp_tiny_adapter):  # noqa: F811
    from effbench.explainers import get_explainer
    from effbench.models.adapter import ClassifierAdapter

    cpu = sharp_tiny_adapter
    cuda = ClassifierAdapter(copy.deepcopy(cpu.model), cpu.tokenizer, max_length=cpu.max_length, name=cpu.name,
                             device="cuda")
    assert next(cuda.model.parameters()).device.type == "cuda"
    cpu_batch, cuda_batch = cpu.make_batch(long_examples()), cuda.make_batch(long_examples())
    assert torch.equal(cpu_batch.targets, cuda_batch.targets)
    for name in ALL_EXPLAINERS:
        first = get_explainer(name).explain(cpu, cpu_batch).scores
        second = get_explainer(name).explain(cuda, cuda_batch).scores
        assert second.device.type == "cpu"
        difference = float((first - second).abs().max())
        assert difference <= 1e-4 * max(1.0, float(first.abs().max())), (name, difference)


def per_example_rows(folder, record) -> dict[str, dict]:
    [path] = folder.glob(f"{record['task']['name']}/{record['explainer']['name']}-*/per_example.jsonl")
    return {row["example_id"]: row for row in map(json.loads, path.read_text().splitlines())}


@needs_cuda
def test_a_run_on_cuda_records_the_cpu_numbers(toy_env, tmp_path):
    """Every explainer and the erasure and minimal-condition metrics: the same records but for the device."""
    import effbench

    metrics = ["necessity", "sufficiency", "min_sufficient", "min_necessary"]
    records = {}
    for device in ("cpu", "cuda"):
        config = effbench.RunConfig(limit=8, batch_size=4, model_kind="tiny", device=device, output_dir=tmp_path / device)
        records[device] = effbench.evaluate(["toy"], ALL_EXPLAINERS, metrics, config, progress=False)
    for cpu, cuda in zip(records["cpu"], records["cuda"]):
        assert cuda["config"]["device"] == "cuda"
        assert cuda["identity_sha256"] == cpu["identity_sha256"]  # the device is not part of a run's identity
        cpu_rows, cuda_rows = per_example_rows(tmp_path / "cpu", cpu), per_example_rows(tmp_path / "cuda", cuda)
        assert cpu_rows.keys() == cuda_rows.keys()
        for example_id, row in cpu_rows.items():
            assert cuda_rows[example_id]["target"] == row["target"]
            for metric in metrics:
                difference = abs(cuda_rows[example_id]["metrics"][metric]["value"] - row["metrics"][metric]["value"])
                assert difference <= 1e-3, (cpu["explainer"]["name"], metric, example_id, difference)


# ---- narrower dtypes -----------------------------------------------------------------------------------

DEVICES = ["cpu", pytest.param("cuda", marks=needs_cuda)]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_a_narrower_dtype_is_recorded_and_close_to_float32(toy_env, tmp_path, dtype, device):
    """The record says its dtype, its identity (and folder) differ from float32's; on the toy model the
    scores agree with float32's to a few percent and the erasure metrics to 0.02. Gradients go through the
    model cast to that dtype."""
    import effbench

    explainers = ["raw_attention", "saliency", "integrated_gradients"]
    metrics = ["necessity", "sufficiency"]
    records = {}
    for run_dtype in ("float32", dtype):
        config = effbench.RunConfig(limit=8, batch_size=4, model_kind="tiny", device=device, dtype=run_dtype,
                                    output_dir=tmp_path / run_dtype)
        records[run_dtype] = effbench.evaluate(["toy"], explainers, metrics, config, progress=False)
    tolerances = {"raw_attention": 0.02, "saliency": 0.05, "integrated_gradients": 0.1}
    for reference, narrow in zip(records["float32"], records[dtype]):
        name = narrow["explainer"]["name"]
        assert narrow["config"]["dtype"] == dtype and reference["config"]["dtype"] == "float32"
        assert narrow["identity_sha256"] != reference["identity_sha256"]
        reference_rows, narrow_rows = per_example_rows(tmp_path / "float32", reference), per_example_rows(tmp_path / dtype, narrow)
        for example_id, row in reference_rows.items():
            other = narrow_rows[example_id]
            assert other["target"] == row["target"]
            scores, other_scores = np.array(row["scores"]), np.array(other["scores"])
            assert np.abs(scores - other_scores).max() <= tolerances[name] * np.abs(scores).max(), (name, example_id)
            for metric in metrics:
                assert abs(other["metrics"][metric]["value"] - row["metrics"][metric]["value"]) <= 0.02


@pytest.mark.parametrize("dtype, consequence", [(torch.bfloat16, "so no singular value of T counts"),
                                                 (torch.float16, "so the rows of C(a) sum to 1 only within it")])
def test_explainers_that_read_col_T_refuse_a_narrower_dtype_in_one_line(sharp_tiny_adapter, dtype, consequence):  # noqa: F811
    """The spec's rank tolerance max(n, d) eps is 1 in bfloat16 here (eps 2^-7, d 128) and 0.125 in float16:
    no rank, or rows of C(a) that sum to 1 only within it (0.998 seen): refused, not computed wrong."""
    from effbench.explainers import get_explainer
    from effbench.models.adapter import ClassifierAdapter

    narrow = ClassifierAdapter(copy.deepcopy(sharp_tiny_adapter.model).to(dtype), sharp_tiny_adapter.tokenizer,
                               max_length=128, name="tiny-narrow")
    batch = narrow.make_batch(long_examples())
    for name in ("effective_attention", "efficient_attention"):
        with pytest.raises(EffbenchError, match="need the model in float32 or float64") as error:
            get_explainer(name).explain(narrow, batch)
        assert "\n" not in str(error.value) and str(error.value).endswith(consequence)
    assert torch.isfinite(get_explainer("raw_attention").explain(narrow, batch).scores).all()


def test_a_model_in_another_dtype_than_the_run_is_refused(toy_env, tmp_path):
    import effbench

    model = effbench.load_model("toy", model_kind="tiny", dtype="bfloat16", progress=False)
    config = effbench.RunConfig(limit=2, output_dir=tmp_path)
    with pytest.raises(EffbenchError, match="the model runs in bfloat16 but the run's dtype is float32"):
        effbench.evaluate(["toy"], ["random"], ["sparsity"], config, progress=False, model=model)
    with pytest.raises(EffbenchError, match="dtype 'int8' is not allowed"):
        effbench.RunConfig(dtype="int8")


# ---- boards --------------------------------------------------------------------------------------------


def test_a_board_refuses_to_rank_two_dtypes_in_one_line_naming_the_records(tmp_path):
    from test_leaderboard import make_record, synthetic_values, write_board, write_record

    from effbench.leaderboard import build_board

    board = write_board(tmp_path)
    values = {"necessity": synthetic_values(0, 0.3)}
    write_record(board, *make_record("mr-sentences", "random", values))
    write_record(board, *make_record("tweets", "random", values))
    write_record(board, *make_record("tweets", "saliency", values, **{"config.dtype": "bfloat16"}))
    with pytest.raises(EffbenchError) as error:
        build_board(board)
    message = str(error.value)
    assert "\n" not in message
    assert "config.dtype is float32 in records/mr-sentences/random-" in message
    assert "records/tweets/random-" in message and "; bfloat16 in records/tweets/saliency-" in message


def test_leaderboard_run_in_another_dtype_writes_new_records_and_retires_the_old(toy_env, tmp_path, capsys):
    import yaml

    from effbench.cli import main
    from effbench.leaderboard import build_board, run_board

    board = tmp_path / "board"
    board.mkdir()
    (board / "board.yaml").write_text(yaml.safe_dump({
        "name": "board", "description": "Two explainers on the toy task.", "tasks": ["toy"],
        "explainers": ["random", "raw_attention"], "metrics": ["necessity"], "main_metric": "necessity",
        "limit": 4, "batch_size": 4, "seed": 0, "model_kind": "tiny", "perturbation": "remove",
    }))
    run_board(board, progress=False)
    float32_folders = sorted(path.parent.name for path in (board / "records" / "toy").glob("*/record.json"))
    capsys.readouterr()
    assert main(["leaderboard", "run", str(board), "--dtype", "bfloat16"]) == 0
    err = capsys.readouterr().err
    assert err.count("another dtype (float32 -> bfloat16)") == 2
    records = [json.loads(path.read_text()) for path in (board / "records" / "toy").glob("*/record.json")]
    assert sorted(record["config"]["dtype"] for record in records) == ["bfloat16", "bfloat16"]
    assert not {path.parent.name for path in (board / "records" / "toy").glob("*/record.json")} & set(float32_folders)
    assert sorted(path.name for path in (board / "superseded" / "toy").iterdir()) == float32_folders
    result = build_board(board)
    assert {record.record["config"]["dtype"] for record in result.records["toy"].values()} == {"bfloat16"}
