"""Tasks x explainers x metrics -> per-example values (JSONL, resumable) -> run records (JSON).

One run record per (task, explainer): its provenance, every parameter, and per metric the mean with a
95% bootstrap interval. Per-example values are appended to `per_example.jsonl` beside it after every
batch, so an interrupted run restarted with the same arguments recomputes nothing already finished.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from effbench.errors import EffbenchError, warn
from effbench.records import environment, run_identity, sha256_json
from effbench.untrusted import excerpt

SCHEMA_VERSION = 1
RUN_LOCK_FILE = ".effbench-lock"
PERTURBATION_MODES = ("remove", "mask")
DTYPES = ("float32", "float64", "bfloat16", "float16")  # of the model's forward passes (effbench.models.adapter.DTYPES)


@dataclass(frozen=True)
class RunConfig:
    seed: int = 0
    limit: int | None = None
    batch_size: int = 16
    device: str = "cpu"
    dtype: str = "float32"
    output_dir: Path = field(default=Path("runs"))
    model_kind: str = "minilm"
    perturbation: str = "remove"
    model: str | None = None  # a classifier folder or hub id instead of the task's reference model
    # False on boards, whose records are committed: no path of this machine enters them
    record_local_paths: bool = True
    # the persistent cache of perturbed-input probabilities (effbench.forward_cache), in GiB; 0: none
    forward_cache_gib: float = 2.0

    def __post_init__(self):
        if self.perturbation not in PERTURBATION_MODES:
            raise EffbenchError(f"perturbation {self.perturbation!r} is not allowed; use one of {', '.join(PERTURBATION_MODES)}")
        if self.dtype not in DTYPES:
            raise EffbenchError(f"dtype {excerpt(self.dtype)} is not allowed; use one of {', '.join(DTYPES)}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            raise EffbenchError(f"seed must be a non-negative integer, got {excerpt(self.seed)}")
        if self.batch_size < 1:
            raise EffbenchError(f"batch size must be at least 1, got {self.batch_size}")
        if self.limit is not None and self.limit < 1:
            raise EffbenchError(f"limit must be at least 1, got {self.limit}")
        if isinstance(self.forward_cache_gib, bool) or not isinstance(self.forward_cache_gib, (int, float)) \
                or not 0 <= self.forward_cache_gib < 1e6:
            raise EffbenchError(f"the forward cache size must be a number of GiB >= 0 (0: no cache), got "
                                f"{excerpt(self.forward_cache_gib)}")

    def recorded(self) -> dict[str, Any]:
        values = asdict(self)
        values["output_dir"] = str(self.output_dir) if self.record_local_paths else None
        if not self.record_local_paths and self.model is not None and Path(self.model).expanduser().exists():
            values["model"] = None
        return values


def _component(obj) -> dict[str, Any]:
    return {"name": obj.name, "version": obj.version, "params": dict(obj.params)}


class _ExampleStore:
    """Per-example rows of one (task, explainer) run, appended as JSONL and read back on restart.

    In memory it keeps only what the record needs: per metric each example's value and whether it was
    flagged, and each example's target and label. Tokens, scores and details stay in the file, so
    memory does not grow with the examples' lengths.
    """

    def __init__(self, path: Path):
        from effbench.recordio import read_rows

        self.path = path
        self.values: dict[str, dict[str, float]] = {}  # metric -> example id -> value
        self.flagged: dict[str, set[str]] = {}  # metric -> the example ids it flagged
        self.target_and_label: dict[str, tuple[int, int | None]] = {}
        if path.exists():
            self._drop_a_line_cut_short()
            for row in read_rows(path).values():
                self._merge(row)

    def _drop_a_line_cut_short(self) -> None:
        """End the last line, so that the next row starts a line: truncate it if an interruption cut it short."""
        with open(self.path, "rb+") as handle:
            text = handle.read()
            if not text or text.endswith(b"\n"):
                return
            start = text.rfind(b"\n") + 1
            try:
                json.loads(text[start:])
            except ValueError:  # an unfinished row: nothing in it can be used
                handle.truncate(start)
            else:
                handle.write(b"\n")

    def _merge(self, row: dict) -> None:
        example_id = row["example_id"]
        if "target" in row:
            self.target_and_label[example_id] = (row["target"], row.get("label"))
        for name, entry in row["metrics"].items():
            self.values.setdefault(name, {})[example_id] = entry["value"]
            if entry.get("flags"):
                self.flagged.setdefault(name, set()).add(example_id)

    def missing(self, example_ids: Sequence[str], metric_names: Sequence[str]) -> bool:
        return any(example_id not in self.values.get(name, {}) for example_id in example_ids for name in metric_names)

    def metric_values(self, metric: str, example_ids: Sequence[str]) -> list:
        return [self.values[metric][example_id] for example_id in example_ids]

    def flagged_count(self, metric: str, example_ids: Sequence[str]) -> int:
        flagged = self.flagged.get(metric, set())
        return sum(example_id in flagged for example_id in example_ids)

    def targets_and_labels(self, example_ids: Sequence[str]) -> list[tuple[int, int | None]]:
        return [self.target_and_label[example_id] for example_id in example_ids]

    def put_in_order(self, example_ids: Sequence[str]) -> None:
        """Batches run by length, and a Ray engine's cells finish in any order: the record lists its examples
        in the task's order (see put_rows_in_order)."""
        if self.path.exists():
            put_rows_in_order(self.path, example_ids)

    def append(self, rows: list[dict]) -> None:
        """Append the rows that add something: a batch recomputed for one missing example repeats the others."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as handle:
            for row in rows:
                if not self.missing([row["example_id"]], list(row["metrics"])):
                    continue
                handle.write(json.dumps(row) + "\n")
                self._merge(row)


def evaluate(
    tasks: Sequence[str],
    explainers: Sequence[str] | Mapping[str, Mapping[str, Any]],
    metrics: Sequence[str] | Mapping[str, Mapping[str, Any]],
    config: RunConfig = RunConfig(),
    *,
    progress: bool = True,
    model=None,
) -> list[dict]:
    """Run every explainer and metric on every task's model; return the run records.

    `explainers` and `metrics` are names, or names mapped to parameters. The model is the task's
    reference model, or `model` (a classifier folder or hub id; or an adapter from `load_model`),
    which overrides `config.model`.
    """
    explainer_specs = dict(explainers) if isinstance(explainers, Mapping) else {name: {} for name in explainers}
    metric_specs = dict(metrics) if isinstance(metrics, Mapping) else {name: {} for name in metrics}
    explainer_objects, metric_objects = run_components(explainer_specs, metric_specs, config)
    records = []
    for task_name in tasks:
        prepared = prepare_task(task_name, explainer_objects, metric_objects, config, model=model, progress=progress)
        with contextlib.ExitStack() as locks:
            open_stores(prepared.runs, locks)
            locks.enter_context(_forward_cache(prepared.model, config))
            records += _run_task(prepared.task, prepared.model, prepared.degenerate, prepared.examples, prepared.runs,
                                 metric_objects, config, progress)
    return records


@dataclass
class PreparedTask:
    """One task's model, evaluated examples and runs (one per explainer: identity, record folder, cost so far)."""

    task: Any
    model: Any
    degenerate: dict | None  # from the model's training record; None until measured on the evaluated examples
    examples: list
    runs: list[dict]


def prepare_task(task_name, explainer_objects, metric_objects, config: RunConfig, *, model=None,
                 progress: bool = True) -> PreparedTask:
    """Load a task and its model (the reference model, trained first if not cached, or `model`), check them, and
    name each explainer's run: its identity and record folder. What any engine does before it computes rows."""
    from effbench.models.loading import load_model
    from effbench.models.reference import degeneracy_on_test_split
    from effbench.tasks import load_task
    from effbench.tasks.planting import check_trigger_token, trigger_warning

    metric_names = [metric.name for metric in metric_objects]
    task = load_task(task_name)
    if model is None or isinstance(model, str):
        task_model = load_model(task, model or config.model, model_kind=config.model_kind, device=config.device,
                                dtype=config.dtype, progress=progress)
    else:
        task_model = model
    if task_model.provenance is None:
        raise EffbenchError("the model has no provenance (which weights it holds): load it with "
                            "effbench.load_model(task, path_or_id), or pass the folder or hub id as model=")
    _check_model_runs_as_configured(task_model, config)
    check_trigger_token(task, task_model.tokenizer)
    examples = list(task.test[: config.limit] if config.limit else task.test)
    training = task_model.provenance.training
    degenerate = None
    if training is not None:
        degenerate = degeneracy_on_test_split(training, [example.label for example in task.test])
        _warn_if_degenerate(task.card.name, degenerate)
        not_learned = trigger_warning(task.card.name, training)
        if not_learned:
            warn(not_learned, loud=True)
    runs = []
    for explainer in explainer_objects:
        identity = run_identity(
            {"name": task.card.name, "version": task.card.version, "card_hash": task.card_hash,
             "data_hash": task.data_hash},
            task_model.provenance.identity, _component(explainer), [_component(metric) for metric in metric_objects],
            perturbation=config.perturbation, seed=config.seed, dtype=config.dtype,
        )
        folder = record_folder(config.output_dir, task.card.name, explainer.name, sha256_json(identity))
        runs.append({"explainer": explainer, "identity": identity, "folder": folder, **new_cost(metric_names)})
    return PreparedTask(task, task_model, degenerate, examples, runs)


def open_stores(runs: list[dict], locks: contextlib.ExitStack) -> None:
    """Lock each run's folder (held until `locks` closes), then read the rows it has into run["store"]."""
    for run in runs:  # locked before its rows are read: another run may be appending to them
        locks.enter_context(_run_lock(run["folder"]))
        run["store"] = _ExampleStore(run["folder"] / "per_example.jsonl")


def open_forward_cache(config: RunConfig):
    """The persistent forward cache of the size the run sets, or None when it sets 0."""
    from effbench.forward_cache import ForwardCache

    if not config.forward_cache_gib:
        return None
    return ForwardCache(max_bytes=max(1, int(config.forward_cache_gib * (1 << 30))))


@contextlib.contextmanager
def _forward_cache(model, config: RunConfig):
    """The model's persistent forward cache for the run (none when its size is 0), closed after it."""
    model.forward_cache = open_forward_cache(config)
    if model.forward_cache is None:
        yield
        return
    try:
        yield
    finally:
        model.forward_cache.close()
        model.forward_cache = None


def _run_task(task, task_model, degenerate, examples, runs, metric_objects, config, progress) -> list[dict]:
    """Compute what the runs of one task are missing, batch by batch, and write their records."""
    from tqdm.auto import tqdm

    from effbench.memory import run_halving_on_oom

    metric_names = [metric.name for metric in metric_objects]
    batches = length_bucketed_batches(examples, token_lengths(task_model, examples), config.batch_size)
    # one step per (batch, explainer): a batch of long inputs takes minutes over all explainers
    bar = tqdm(total=len(batches) * len(runs), desc=task.card.name, unit="step", disable=not progress)
    for batch_number, batch_examples in enumerate(batches, start=1):
        ids = [example.id for example in batch_examples]
        pending = [run for run in runs if run["store"].missing(ids, metric_names)]
        bar.update(len(runs) - len(pending))
        if not pending:
            continue

        def run_part(part, batch_number=batch_number, pending=pending):
            """Every pending run on `part` of the batch; a run whose rows an earlier, larger try wrote is skipped."""
            part_ids = [example.id for example in part]
            batch = task_model.make_batch(part)
            facts = _input_facts(task_model, batch)
            for run in pending:
                if not run["store"].missing(part_ids, metric_names):
                    continue
                _run_explainer_on_batch(run, task, task_model, batch, facts, metric_objects, config, batch_number, bar)
                bar.update(len(part) / len(batch_examples))  # a whole step per explainer, unless halved
            return []

        # out of GPU memory, the batch runs in halves: no number depends on which examples share a batch
        run_halving_on_oom(run_part, batch_examples, what=f"examples of batch {batch_number} of task {task.card.name}")
        # the perturbed inputs of this batch's examples are not asked for again: memory stays flat
        task_model.perturbation_cache.clear()
        _release_freed_memory()
    bar.close()
    return write_records(task, task_model, degenerate, examples, runs, metric_objects, config)


def write_records(task, task_model, degenerate, examples, runs, metric_objects, config: RunConfig) -> list[dict]:
    """Write each run's record.json from the rows in its store (every evaluated example has its rows); return them."""
    if degenerate is None and runs:
        # no training record: measured on the evaluated examples, from the model's predictions in the rows
        degenerate = _degeneracy_on_evaluated(runs[0], examples)
        _warn_if_degenerate(task.card.name, degenerate)
    records = []
    for run in runs:
        run["store"].put_in_order([example.id for example in examples])
        record = _record(run, task, task_model, degenerate, metric_objects, examples, config)
        (run["folder"] / "record.json").write_text(json.dumps(record, indent=2) + "\n")
        records.append(record)
    return records


def _input_facts(model, batch) -> list[dict] | None:
    """The facts about the inputs the board's claims section splits by; None in bfloat16 or float16,
    whose rounding leaves rank([T | 1]) undefined under the spec's tolerance."""
    import torch

    from effbench.explainers.efficient import input_facts

    return input_facts(model, batch) if model.dtype in (torch.float32, torch.float64) else None


def _run_explainer_on_batch(run, task, task_model, batch, facts, metric_objects, config, batch_number, bar) -> None:
    """Explain the batch, score it with every metric, append its rows; count seconds and passes."""
    bar.set_postfix_str(f"batch {batch_number}, {run['explainer'].name}", refresh=True)
    rows = score_batch(task_model, run["explainer"], batch, facts, metric_objects, config,
                       f"batch {batch_number} of task {task.card.name}", run)
    run["store"].append(rows)


def new_cost(metric_names: Sequence[str]) -> dict:
    """What `score_batch` adds its seconds, passes and examples to (a run of the local engine is one)."""
    return {"seconds": {"explainer": 0.0, **{name: 0.0 for name in metric_names}},
            "passes": {"explainer": {"computed": 0, "backward": 0},
                       **{name: _no_passes() for name in metric_names}},
            "computed_examples": 0}


def add_cost(total: dict, part: dict) -> None:
    """Add the cost of `part` (from `new_cost`, filled by `score_batch`) to `total`, a run or another cost."""
    for name, seconds in part["seconds"].items():
        total["seconds"][name] += seconds
    for name, counts in part["passes"].items():
        for count, value in counts.items():
            total["passes"][name][count] += value
    total["computed_examples"] += part["computed_examples"]


def score_batch(model, explainer, batch, facts, metric_objects, config: RunConfig, where: str, cost: dict) -> list[dict]:
    """One explainer's per-example rows on one batch, with every metric: what both engines compute. The seconds,
    forward rows and examples it took are added to `cost` (a run, or `new_cost(...)`)."""
    from effbench.metrics.base import ExplainerMetric
    from effbench.metrics.perturbation import PerturbationEngine

    engine = PerturbationEngine(model, mode=config.perturbation, sets_family=f"sets of {explainer.name}")
    started, forwarded, backward = time.perf_counter(), model.passes.forwarded, model.passes.backward
    attribution = _explain(explainer, model, batch, where)
    cost["seconds"]["explainer"] += time.perf_counter() - started
    cost["passes"]["explainer"]["computed"] += model.passes.forwarded - forwarded
    cost["passes"]["explainer"]["backward"] += model.passes.backward - backward
    per_metric = {}
    for metric in metric_objects:
        started, before = time.perf_counter(), _engine_counts(engine)
        forwarded, backward = model.passes.forwarded, model.passes.backward
        if isinstance(metric, ExplainerMetric):  # it runs the explainer again
            per_metric[metric.name] = metric.compute(engine, batch, attribution, explainer)
        else:
            per_metric[metric.name] = metric.compute(engine, batch, attribution)
        cost["seconds"][metric.name] += time.perf_counter() - started
        passes, after = cost["passes"][metric.name], _engine_counts(engine)
        for count, now, then in zip(("requested", "computed", "from_forward_cache"), after, before):
            passes[count] += now - then
        # rows a metric runs itself, outside the engine (the explainer metrics' noisy inputs and re-explanations)
        outside_engine = (model.passes.forwarded - forwarded) - (after[1] - before[1])
        passes["requested"] += outside_engine
        passes["computed"] += outside_engine
        passes["backward"] += model.passes.backward - backward
    cost["computed_examples"] += len(batch)
    return _rows(model, batch, attribution, per_metric, input_facts=facts)


def _no_passes() -> dict[str, int]:
    return {"requested": 0, "computed": 0, "from_forward_cache": 0, "backward": 0}


def _engine_counts(engine) -> tuple[int, int, int]:
    return engine.sequences_requested, engine.sequences_evaluated, engine.sequences_from_forward_cache


def token_lengths(model, examples: Sequence) -> list[int]:
    """How many tokens the model sees of each example (special tokens included, after truncation)."""
    encoded = model.tokenizer([example.text for example in examples], truncation=True, max_length=model.max_length)
    return [len(ids) for ids in encoded["input_ids"]]


def length_bucketed_batches(examples: Sequence, lengths: Sequence[int], batch_size: int) -> list[list]:
    """Batches of `batch_size` examples of similar token length, longest first.

    Examples are sorted by length (ties keep the task's order) and cut into consecutive batches, so a
    batch pads its rows to nearly their own length. Rows are keyed by example id and no number depends on
    which examples share a batch, so the grouping changes no result, only the padding (1.27 padded per
    real token over a run of integrated gradients and necessity on 64 sentences in the task's order,
    1.10 bucketed)."""
    order = sorted(range(len(examples)), key=lambda index: (-lengths[index], index))
    ordered = [examples[index] for index in order]
    return [ordered[start: start + batch_size] for start in range(0, len(ordered), batch_size)]


def _check_model_runs_as_configured(model, config: RunConfig) -> None:
    """A model passed in must run in the config's dtype and on its kind of device: the record says so."""
    import torch

    dtype = str(model.dtype).removeprefix("torch.")
    if dtype != config.dtype:
        raise EffbenchError(f"the model runs in {dtype} but the run's dtype is {config.dtype}: load it with "
                            f"dtype={config.dtype!r}, or set RunConfig(dtype={dtype!r})")
    if model.device.type != torch.device(config.device).type:
        raise EffbenchError(f"the model is on {model.device} but the run's device is {config.device}: load it with "
                            f"device={config.device!r}, or set RunConfig(device={str(model.device)!r})")


def put_rows_in_order(path: Path, example_ids: Sequence[str]) -> None:
    """Rewrite a per-example file, if it is not so already, with one row per example in the task's example
    order (rows of examples the run did not evaluate after them, as they were): the board checks the rows'
    order, and cells finish in any order. Reads the rows one at a time, as the runner keeps no tokens in memory."""
    position = {example_id: number for number, example_id in enumerate(example_ids)}
    spans: dict[str, list[tuple[int, int]]] = {}  # example id -> (offset, length) of each of its lines
    with open(path, "rb") as handle:
        offset = 0
        for line in handle:
            if line.strip():
                spans.setdefault(json.loads(line)["example_id"], []).append((offset, len(line)))
            offset += len(line)
    order = sorted(spans, key=lambda example_id: position.get(example_id, len(position)))
    if order == list(spans) and all(len(lines) == 1 for lines in spans.values()):
        return
    temporary = path.with_name(f".{path.name}.tmp")
    with open(path, "rb") as source, open(temporary, "wb") as target:
        for example_id in order:
            lines = []
            for offset, length in spans[example_id]:
                source.seek(offset)
                lines.append(source.read(length).rstrip(b"\n"))
            if len(lines) == 1:
                target.write(lines[0] + b"\n")
                continue
            row = json.loads(lines[0])  # later rows of an example add metrics, as recordio.read_rows merges them
            for later in lines[1:]:
                row["metrics"].update(json.loads(later)["metrics"])
            target.write((json.dumps(row) + "\n").encode("utf-8"))
    os.replace(temporary, path)


def _release_freed_memory() -> None:
    """Hand the heap that glibc keeps after tensors of many shapes are freed back to the system: without
    it a run's RSS grows by about 9 MB per 1,000 examples that it could reuse, but does not."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.lru_cache(maxsize=1)
def _malloc_trim():
    """glibc's malloc_trim, or None where the C library has none."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        return None


def _explain(explainer, model, batch, where: str):
    """The explainer's attribution; its failure as one line naming it and the batch (the rows so far are kept)."""
    try:
        return explainer.explain(model, batch)
    except (KeyboardInterrupt, MemoryError):
        raise
    except EffbenchError as error:  # what it returned broke the contract (a list, complex scores, a shape)
        raise EffbenchError(f"explainer {explainer.name} failed on {where}: {error}; the rows of earlier batches "
                            "are saved") from error
    except Exception as error:  # third-party code: any failure is the explainer's
        from effbench.memory import is_out_of_memory

        if is_out_of_memory(error):  # the batch's, not the explainer's: the caller halves the batch
            raise
        raise EffbenchError(f"explainer {explainer.name} failed on {where}: {type(error).__name__}: "
                            f"{excerpt(str(error))}; the rows of earlier batches are saved") from error


@contextlib.contextmanager
def _run_lock(folder: Path):
    """An exclusive lock on a run's folder, held while the run reads and appends its rows; refused if taken.

    The operating system releases it when the process ends, however it ends.
    """
    from filelock import FileLock, Timeout

    folder.mkdir(parents=True, exist_ok=True)
    lock = FileLock(folder / RUN_LOCK_FILE, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise EffbenchError(f"another effbench run is writing {folder} (it holds {RUN_LOCK_FILE}); wait until it "
                            "ends, then run again to resume from its rows, or choose another --output") from None
    try:
        yield
    finally:
        lock.release()


def _degeneracy_on_evaluated(run, examples) -> dict:
    from effbench.models.reference import degeneracy, majority_class

    pairs = run["store"].targets_and_labels([example.id for example in examples])
    accuracy = sum(target == label for target, label in pairs) / len(pairs)
    return degeneracy(accuracy, majority_class([label for _, label in pairs])[1], "evaluated examples")


def _warn_if_degenerate(task_name: str, degenerate: dict) -> None:
    from effbench.models.reference import degenerate_warning

    warning = degenerate_warning(task_name, degenerate["test_accuracy"], degenerate["majority_rate"],
                                 degenerate["measured_on"])
    if warning:
        warn(warning, loud=True)


def record_folder(output_dir: str | Path, task: str, explainer: str, identity_sha256: str) -> Path:
    """Where the run of one explainer on one task keeps its record: one folder per identity, inside `output_dir`."""
    from effbench.components import check_component_name

    check_component_name(explainer, "explainer")
    folder = Path(output_dir) / task / f"{explainer}-{identity_sha256[:10]}"
    if not folder.resolve().is_relative_to(Path(output_dir).resolve()):
        raise EffbenchError(f"the record folder of task {excerpt(task)}, explainer {excerpt(explainer)} would lie "
                            f"outside the output folder {output_dir}")
    return folder


def run_components(explainers: Mapping[str, Mapping[str, Any]], metrics: Mapping[str, Mapping[str, Any]],
                   config: RunConfig) -> tuple[list, list]:
    """A run's explainer and metric objects, from names (or `package.module:Class`) mapped to parameters."""
    return ([explainer_for_run(name, params, config.seed) for name, params in explainers.items()],
            [metric_for_run(name, params, config.perturbation, config.seed) for name, params in metrics.items()])


def explainer_for_run(name: str, params: Mapping[str, Any], seed: int):
    """A seeded explainer takes the run's seed unless its own was given."""
    from effbench.explainers import explainers, get_explainer

    if "seed" in explainers.get(name).defaults and "seed" not in params:
        return get_explainer(name, **params, seed=seed)
    return get_explainer(name, **params)


def metric_for_run(name: str, params: Mapping[str, Any], perturbation: str, seed: int = 0):
    """A perturbation metric takes the run's perturbation mode, and a seeded metric the run's seed, unless
    its own was given."""
    from effbench.metrics import get_metric, metrics

    defaults = metrics.get(name).defaults
    run_params = {"mode": perturbation, "seed": seed}
    return get_metric(name, **params, **{key: value for key, value in run_params.items()
                                         if key in defaults and key not in params})


def _rows(model, batch, attribution, per_metric, *, input_facts: list[dict] | None) -> list[dict]:
    """One row per example. `input_facts` (per example, from `effbench.explainers.efficient.input_facts`;
    None where the model's dtype gives no rank) are facts about the input that no explainer changes;
    they never enter the run's identity."""
    rows = []
    for row in range(len(batch)):
        mask = batch.scorable_mask[row]
        token_ids = batch.input_ids[row][mask].tolist()
        rows.append({
            "example_id": batch.example_ids[row],
            "label": int(batch.labels[row]) if batch.labels is not None else None,
            "target": int(batch.targets[row]),
            "tokens": model.tokenizer.convert_ids_to_tokens(token_ids),
            "scores": [round(float(s), 7) for s in attribution.scores[row][mask].tolist()],
            "metrics": {name: _metric_entry(result, row) for name, result in per_metric.items()},
            **({"input": input_facts[row]} if input_facts is not None else {}),
        })
    return rows


def _metric_entry(result, row: int) -> dict:
    entry = {"value": float(result.values[row]), "flags": list(result.flags[row])}
    if result.details is not None and result.details[row]:
        entry["details"] = result.details[row]
    return entry


def _as_float(value: float | None) -> float:
    return float("nan") if value is None else float(value)


def _record(run, task, model, degenerate, metric_objects, examples, config) -> dict:
    from effbench.stats import bootstrap_mean

    explainer = run["explainer"]
    store, ids = run["store"], [example.id for example in examples]
    results = {}
    for metric in metric_objects:
        values = [_as_float(value) for value in store.metric_values(metric.name, ids)]
        results[metric.name] = {**bootstrap_mean(values, seed=config.seed), "flagged": store.flagged_count(metric.name, ids)}
    pairs = store.targets_and_labels(ids)
    return {
        "schema_version": SCHEMA_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        # what the record's folder name is keyed by: task, data, model checkpoint, components, seed, mode
        "identity_sha256": sha256_json(run["identity"]),
        "environment": environment(),
        "config": config.recorded(),
        # labels, the class names in class order, stay out of the identity, whose hash names the record's folder
        "task": {**run["identity"]["task"], "test_examples": len(task.test), "evaluated": len(examples),
                 "example_ids_sha256": sha256_json([example.id for example in examples]),
                 "citation": task.card.citation, "labels": list(task.label_names)},
        # the tokens the model saw: at most max_length, cut on the tokenizer's truncation side
        # degenerate: whether the model is hardly more accurate than always answering the majority class
        "model": {**model.provenance.recorded(keep_local_path=config.record_local_paths),
                  "max_length": model.max_length, "truncation_side": model.tokenizer.truncation_side,
                  "degenerate": degenerate, "mask_token": _mask_token(model.tokenizer)},
        "explainer": {**_component(explainer), "citation": explainer.citation},
        "metrics": [{**_component(metric), "family": metric.family, "direction": metric.direction,
                     "range": list(metric.range), "citation": metric.citation} for metric in metric_objects],
        "results": results,
        "accuracy_on_evaluated": sum(target == label for target, label in pairs) / len(pairs),
        **_session_cost(run),
        "per_example_file": "per_example.jsonl",
    }


def _session_cost(run) -> dict:
    """What the run's last session that computed anything cost: a run that found every row done keeps the
    figures of the record it rewrites (the same identity), so that a re-run does not erase them."""
    cost = {
        "examples_computed_this_session": run["computed_examples"],
        "timings_seconds_this_session": {name: round(seconds, 3) for name, seconds in run["seconds"].items()},
        # forward rows: per metric, the perturbed inputs asked for (requested), those run (computed) and
        # those read from the forward cache; the explainer's rows through the model (computed)
        "passes_this_session": run["passes"],
    }
    previous = run["folder"] / "record.json"
    if run["computed_examples"] == 0 and previous.exists():
        try:
            old = json.loads(previous.read_text())
        except (OSError, ValueError):
            return cost
        for key in cost:
            if key in old:
                cost[key] = old[key]
    return cost


def _mask_token(tokenizer) -> dict | None:
    """The token `mask` perturbations write for this tokenizer (its mask token, or the unk token standing
    in for it), or None when it has neither that may be used and `mask` is refused."""
    from effbench.metrics.perturbation import mask_token_id

    token_id = mask_token_id(tokenizer)
    if token_id is None:
        return None
    return {"token": tokenizer.convert_ids_to_tokens(token_id), "id": token_id,
            "stands_in_for_mask": tokenizer.mask_token_id is None}


def results_rows(records: list[dict]) -> list[dict]:
    """One row per (task, explainer, metric): mean, 95% interval, n, flagged, which direction is better."""
    rows = []
    for record in records:
        for metric in record["metrics"]:
            result = record["results"][metric["name"]]
            rows.append({"task": record["task"]["name"], "explainer": record["explainer"]["name"],
                         "metric": metric["name"], "better": metric["direction"], "mean": round(result["mean"], 4),
                         "95% CI": f"[{result['low']:.4f}, {result['high']:.4f}]", "n": result["n"],
                         "flagged": result["flagged"]})
    return rows
