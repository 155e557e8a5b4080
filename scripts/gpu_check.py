"""The Python half of scripts/gpu_check.sh (read that first): stage what travels, and time runs on a device.

    python scripts/gpu_check.py prepare --carry gpu_carry      # here: the tasks' examples, the models' configs
    python scripts/gpu_check.py wheels                          # here: the wheels the GPU machine lacks, NAME==VERSION
    python scripts/gpu_check.py measure --carry gpu_carry --out OUT --device cuda --limit 64 --deadline EPOCH

`measure` writes OUT/gpu_check.json after every step, so that a run stopped at its time limit still
reports what it measured.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

TASKS = ("mr-sentences", "tweets", "bbc-news", "mr-reviews")  # shortest inputs first: the time left goes to the longest
EXPLAINERS = ("random", "raw_attention", "attention_rollout", "effective_attention", "efficient_attention",
              "attention_norm", "saliency", "grad_x_input", "integrated_gradients", "leave_one_out")
METRICS = ("necessity", "sufficiency", "faithfulness", "sparsity", "min_sufficient", "min_necessary")
BATCH_SIZE = 16  # the standard board's
# what a model folder holds besides its weights; the weights (87 MB per MiniLM) do not fit in what travels
MODEL_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")
# the packages effbench needs that the GPU machine's image lacks (it reaches no package index)
WHEELS = ("transformers", "datasets", "dill", "multiprocess")
SOLVER_RESERVE_SECONDS = 45  # kept back from the task runs for the solver's timing


def prepare(carry: Path) -> None:
    """Copy each task's parsed examples and its reference model's config and tokenizer into `carry`."""
    from effbench.models.reference import checkpoint_dir, training_config
    from effbench.tasks import load_task
    from effbench.tasks.loading import _cache_file

    for name in TASKS:
        task = load_task(name)
        examples = _cache_file(task.card)
        (carry / "cache" / "tasks").mkdir(parents=True, exist_ok=True)
        shutil.copy2(examples, carry / "cache" / "tasks" / examples.name)
        folder = checkpoint_dir(task, training_config(task, "minilm"))
        if not (folder / "training.json").is_file():
            sys.exit(f"gpu_check: no reference model of {name} here; run first: effbench train --task {name}")
        target = carry / "models" / name
        target.mkdir(parents=True, exist_ok=True)
        for file in MODEL_FILES:
            if (folder / file).is_file():
                shutil.copy2(folder / file, target / file)
        training = json.loads((folder / "training.json").read_text())
        (target / "reference.json").write_text(json.dumps(
            {"reference_model": f"{name}/{folder.name}", "checkpoint_sha256": training["checkpoint_sha256"]}) + "\n")
        print(f"gpu_check: staged {name}: {examples.name} and the config and tokenizer of {folder.name}")


def wheels() -> None:
    """NAME==VERSION of each wheel to carry, at the versions installed here."""
    from importlib.metadata import version

    print(" ".join(f"{name}=={version(name)}" for name in WHEELS))


def stand_in(name: str, carry: Path, work: Path) -> tuple[str | None, str]:
    """(the --model folder, what it is) for task `name`: None and its reference model where one is cached, else
    a MiniLM with the reference model's config and tokenizer and seeded random weights (for timing only: the
    shapes and input lengths are the reference model's, its predictions are not)."""
    from effbench.errors import EffbenchError
    from effbench.models.reference import load_reference_model
    from effbench.tasks import load_task

    try:
        _, training = load_reference_model(load_task(name), train_if_missing=False, progress=False)
        return None, f"reference model {training['checkpoint_sha256'][:12]}"
    except EffbenchError:
        pass
    import torch
    import transformers

    source, folder = carry / "models" / name, work / "stand-ins" / name
    if not (folder / "model.safetensors").is_file():
        config = transformers.AutoConfig.from_pretrained(source)
        torch.manual_seed(0)
        model = transformers.AutoModelForSequenceClassification.from_config(config, attn_implementation="eager")
        model.save_pretrained(folder, safe_serialization=True)
        for file in MODEL_FILES:
            if file != "config.json" and (source / file).is_file():
                shutil.copy2(source / file, folder / file)
    reference = json.loads((source / "reference.json").read_text())["reference_model"]
    return str(folder), f"random-weight stand-in with the config and tokenizer of {reference} (timing only)"


def rows_per_explainer(runs: Path, name: str) -> dict[str, int]:
    counts = {}
    for path in sorted((runs / name).glob("*/per_example.jsonl")):
        counts[path.parent.name.rsplit("-", 1)[0]] = len(path.read_text().splitlines())
    return counts


def time_task(name: str, model: str | None, device: str, limit: int, runs: Path, budget: float, log) -> dict:
    """One `effbench run` of every explainer and metric on the first `limit` test examples, stopped after `budget` s."""
    command = [sys.executable, "-m", "effbench.cli", "run", "--task", name, "--device", device, "--limit", str(limit),
               "--batch-size", str(BATCH_SIZE), "--explainer", *EXPLAINERS, "--metric", *METRICS,
               "--output", str(runs), "--quiet", "--format", "json"]
    if model is not None:
        command += ["--model", model]
    started = time.perf_counter()
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=max(budget, 1))
        status = "finished" if result.returncode == 0 else f"failed (exit {result.returncode})"
        log(f"--- {name}: {status}\n{result.stderr[-4000:]}")
    except subprocess.TimeoutExpired as stopped:
        status = f"stopped after its budget of {budget:.0f} s"
        log(f"--- {name}: {status}\n{(stopped.stderr or b'')[-4000:]!r}")
    wall = time.perf_counter() - started
    counts = rows_per_explainer(runs, name)
    done = min(counts.values()) if len(counts) == len(EXPLAINERS) else 0
    figures = {"status": status, "examples_asked": limit, "examples_done_by_every_explainer": done,
               "rows_per_explainer": counts, "wall_seconds": round(wall, 1),
               # the process's start and the model's load are in the wall time
               "wall_seconds_per_example": round(wall / done, 3) if done else None}
    records = {path.parent.name.rsplit("-", 1)[0]: json.loads(path.read_text())
               for path in (runs / name).glob("*/record.json")}
    if records:
        seconds = {explainer: record["timings_seconds_this_session"] for explainer, record in records.items()}
        evaluated = next(iter(records.values()))["task"]["evaluated"]
        total = sum(sum(parts.values()) for parts in seconds.values())
        figures.update({"computed_seconds_per_example": round(total / evaluated, 3),
                        "seconds_by_explainer_and_metric": seconds,
                        "model_dtype": next(iter(records.values()))["config"]["dtype"]})
    return figures


def time_solver(name: str, model_folder: str | None, device: str) -> dict:
    """The `cls` readout's linear programs of the first batch of `name` (last layer, every head), solved by the
    batched simplex on the CPU and on `device`: seconds each and the largest difference of the rows."""
    import numpy as np
    import torch

    from effbench.explainers.attention import attention_rows
    from effbench.explainers.efficient import efficient_rows
    from effbench.models.loading import load_model
    from effbench.tasks import load_task

    task = load_task(name)
    model = load_model(task, model_folder, device=device, progress=False)
    batch = model.make_batch(task.test[:BATCH_SIZE])
    lengths = batch.attention_mask.sum(1).tolist()
    captured = []
    attention_rows(model, batch.forward, model.num_layers - 1, lengths, list(range(model.num_heads)),
                   all_queries=False, transform=lambda bases, rows: captured.append((bases, rows)) or rows)
    figures: dict = {"task": name, "examples": len(batch), "linear_programs": sum(
        int(basis.shape[1] < basis.shape[0]) for bases, _ in captured for example in bases.with_ones for basis in example)}
    solved = {}
    for where in dict.fromkeys(["cpu", device]):
        efficient_rows(*captured[0], device=where)  # a first call pays for kernel loading, not the method
        if where != "cpu":
            torch.cuda.synchronize()
        started = time.perf_counter()
        solved[where] = [efficient_rows(bases, rows, device=where) for bases, rows in captured]
        figures[f"seconds_on_{where}"] = round(time.perf_counter() - started, 4)
    if device != "cpu":
        figures["max_abs_difference"] = max(float(np.abs(first - second).max())
                                            for cpu, other in zip(solved["cpu"], solved[device])
                                            for first, second in zip(cpu, other))
    return figures


def measure(args) -> None:
    import torch
    import transformers

    out, carry = Path(args.out), Path(args.carry)
    work = Path(os.environ.get("TMPDIR", "/tmp")) / "effbench-gpu-check"
    runs = work / "runs"
    shutil.rmtree(runs, ignore_errors=True)
    log_file = out / "runs.log"

    def log(text: str) -> None:
        with open(log_file, "a") as handle:
            handle.write(text + "\n")

    report: dict = {
        "device": args.device,
        "device_name": torch.cuda.get_device_name(0) if args.device != "cpu" else platform.processor() or "cpu",
        "torch": torch.__version__, "cuda": torch.version.cuda, "transformers": transformers.__version__,
        "python": platform.python_version(), "limit": args.limit, "batch_size": BATCH_SIZE,
        "explainers": list(EXPLAINERS), "metrics": list(METRICS),
        "tests": {"exit_code": args.tests_rc, "summary": _last_line(args.tests_log)},
        "tasks": {},
    }

    def write() -> None:
        (out / "gpu_check.json").write_text(json.dumps(report, indent=2) + "\n")

    write()
    models = {}
    for index, name in enumerate(TASKS):
        models[name], what = stand_in(name, carry, work)
        left = args.deadline - time.time() - SOLVER_RESERVE_SECONDS
        budget = left / (len(TASKS) - index)
        report["tasks"][name] = {"model": what, **time_task(name, models[name], args.device, args.limit, runs,
                                                            budget, log)}
        write()
    report["solver"] = []
    for name in ("mr-reviews", "bbc-news"):  # the longest inputs: the most linear programs with room in C(a)
        if args.deadline - time.time() < 15:
            break
        try:
            report["solver"].append(time_solver(name, models[name], args.device))
        except Exception as error:  # a report with the error beats no report
            report["solver"].append({"task": name, "error": f"{type(error).__name__}: {error}"})
        write()


def _last_line(path: str | None) -> str | None:
    if not path or not Path(path).is_file():
        return None
    lines = [line for line in Path(path).read_text().splitlines() if line.strip()]
    return lines[-1] if lines else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    staged = commands.add_parser("prepare")
    staged.add_argument("--carry", required=True)
    commands.add_parser("wheels")
    timed = commands.add_parser("measure")
    timed.add_argument("--carry", required=True)
    timed.add_argument("--out", required=True)
    timed.add_argument("--device", default="cuda")
    timed.add_argument("--limit", type=int, default=64)
    timed.add_argument("--deadline", type=float, required=True, help="seconds since the epoch to be done by")
    timed.add_argument("--tests-rc", type=int)
    timed.add_argument("--tests-log")
    args = parser.parse_args()
    if args.command == "prepare":
        prepare(Path(args.carry))
    elif args.command == "wheels":
        wheels()
    else:
        measure(args)


if __name__ == "__main__":
    main()
