"""Seconds per example of a board's explainers and metrics, per task, for one or more checkouts of effbench.

Each (task, checkout) runs in a process of its own with that checkout first on PYTHONPATH, on the first
`--examples` test examples of the task, with a fresh output folder and (where the checkout has one) an
empty forward cache, so no run reuses another's work. The checkouts alternate task by task, so that other
load on the machine falls on all of them alike. It measures the code, not a board: the records are thrown
away. With `--rerun`, each process then runs the same again into another folder, with the forward cache
the first run filled: what a re-run after a version bump of every component costs. Prints a table, and
JSON with `--json`.

    python scripts/board_seconds.py --checkout before=/path/to/old/clone --checkout after=. \\
        --examples mr-sentences=48 mr-reviews=16 bbc-news=32 tweets=48

The reference models must be cached (or the first run of each task trains one, and is timed with it;
`effbench train --task T` first). Explainers and metrics default to the standard board's attention,
gradient and erasure explainers and its six metrics, which every checkout since 2026-11 has.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

DEFAULT_EXPLAINERS = ["random", "raw_attention", "attention_rollout", "effective_attention", "efficient_attention",
                      "attention_norm", "saliency", "grad_x_input", "integrated_gradients", "leave_one_out"]
DEFAULT_METRICS = ["necessity", "sufficiency", "faithfulness", "sparsity", "min_sufficient", "min_necessary"]

# Runs in the child process, against whichever effbench its PYTHONPATH gives.
CHILD = """
import json, sys, time
from pathlib import Path
from effbench.runner import RunConfig, evaluate
task, limit, output, kind = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]), sys.argv[6]
explainers, metrics, rerun = sys.argv[4].split(","), sys.argv[5].split(","), sys.argv[7] == "rerun"
start = time.perf_counter()
config = RunConfig(limit=limit, batch_size=16, output_dir=output / "first", model_kind=kind)
records = evaluate([task], explainers, metrics, config, progress=False)
seconds = time.perf_counter() - start
rerun_seconds = None
if rerun:  # everything again into a new folder: what a re-run after a version bump of every component costs
    start = time.perf_counter()
    config = RunConfig(limit=limit, batch_size=16, output_dir=output / "second", model_kind=kind)
    evaluate([task], explainers, metrics, config, progress=False)
    rerun_seconds = time.perf_counter() - start
by_component = {}
for r in records:
    for name, spent in r["timings_seconds_this_session"].items():
        name = r["explainer"]["name"] if name == "explainer" else name
        by_component[name] = by_component.get(name, 0.0) + spent
print(json.dumps({"seconds": seconds, "rerun_seconds": rerun_seconds,
                  "explainer_and_metric_seconds": sum(by_component.values()), "seconds_by_component": by_component,
                  "examples": records[0]["task"]["evaluated"]}))
"""


def parse_pairs(values: list[str], what: str) -> dict[str, str]:
    pairs = {}
    for value in values:
        name, sep, rest = value.partition("=")
        if not sep or not name or not rest:
            raise SystemExit(f"board_seconds: {what} {value!r} is not NAME=VALUE")
        pairs[name] = rest
    return pairs


def run_one(checkout: Path, task: str, limit: int, explainers: list[str], metrics: list[str], kind: str,
            rerun: bool) -> dict:
    with tempfile.TemporaryDirectory(prefix="board-seconds-") as scratch:
        environment = dict(os.environ, PYTHONPATH=str(checkout), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1",
                           EFFBENCH_FORWARD_CACHE=str(Path(scratch) / "forward-cache"))
        done = subprocess.run([sys.executable, "-c", CHILD, task, str(limit), str(Path(scratch) / "runs"),
                               ",".join(explainers), ",".join(metrics), kind, "rerun" if rerun else "once"],
                              env=environment, capture_output=True, text=True, cwd=scratch)
    if done.returncode:
        raise SystemExit(f"board_seconds: {task} on {checkout} failed: {done.stderr.strip().splitlines()[-1]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkout", action="append", required=True, metavar="NAME=PATH")
    parser.add_argument("--examples", nargs="+", required=True, metavar="TASK=N")
    parser.add_argument("--explainers", default=",".join(DEFAULT_EXPLAINERS))
    parser.add_argument("--metrics", default=",".join(DEFAULT_METRICS))
    parser.add_argument("--model-kind", default="minilm", help="the reference model kind (minilm, or tiny)")
    parser.add_argument("--rerun", action="store_true", help="also time a second run on the filled forward cache")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--by-component", action="store_true",
                        help="also seconds per example per explainer and per metric (summed over explainers)")
    args = parser.parse_args()
    checkouts = {name: Path(path).resolve() for name, path in parse_pairs(args.checkout, "checkout").items()}
    sizes = {task: int(n) for task, n in parse_pairs(args.examples, "examples").items()}
    explainers, metrics = args.explainers.split(","), args.metrics.split(",")
    results = {}
    for task, limit in sizes.items():
        for name, checkout in checkouts.items():
            result = run_one(checkout, task, limit, explainers, metrics, args.model_kind, args.rerun)
            result["seconds_per_example"] = result["seconds"] / result["examples"]
            if args.rerun:
                result["rerun_seconds_per_example"] = result["rerun_seconds"] / result["examples"]
            results.setdefault(task, {})[name] = result
            print(f"{task} {name}: {result['seconds_per_example']:.2f} s per example", file=sys.stderr, flush=True)
    if args.json:
        print(json.dumps({"explainers": explainers, "metrics": metrics, "model_kind": args.model_kind,
                          "results": results}, indent=2))
        return
    from tabulate import tabulate

    names = list(checkouts)
    rows = []
    for task, by_checkout in results.items():
        row = [task, by_checkout[names[0]]["examples"]]
        row += [f"{by_checkout[n]['seconds_per_example']:.2f}" for n in names]
        row += [f"{by_checkout[n]['seconds_per_example'] / by_checkout[names[0]]['seconds_per_example']:.2f}x"
                for n in names[1:]]
        if args.rerun:
            row += [f"{by_checkout[n]['rerun_seconds_per_example']:.2f}" for n in names]
        rows.append(row)
    headers = ["task", "examples"] + [f"{n} s/example" for n in names] + [f"{n} / {names[0]}" for n in names[1:]]
    if args.rerun:
        headers += [f"{n} rerun s/example" for n in names]
    print(tabulate(rows, headers=headers, tablefmt="github"))
    if args.by_component:
        for task, by_checkout in results.items():
            per_example = {n: {component: spent / by_checkout[n]["examples"]
                               for component, spent in by_checkout[n]["seconds_by_component"].items()} for n in names}
            table = [[component] + [f"{per_example[n].get(component, 0.0):.3f}" for n in names]
                     for component in per_example[names[0]]]
            print(f"\n{task}: seconds per example by component")
            print(tabulate(table, headers=["component"] + names, tablefmt="github"))


if __name__ == "__main__":
    main()
