"""The Ray engine: a board's grid as (task, explainer, shard) cells on Ray worker actors.

A shard is `batch_size` consecutive examples of a task (in the task's example order), so a cell is one of
the local engine's (batch, explainer) steps. Each worker is an actor with one CPU and one torch thread (on
a local Ray with fewer workers than CPUs, an equal share of them as threads) that loads each task's model
once, when it first gets one of its cells. A cell computes the rows of its
shard's examples that the record's `per_example.jsonl` lacks, for one explainer with every metric of the
board, with the local engine's code (`effbench.runner.score_batch`); the driver appends them to the record
as soon as the cell returns, and once a task's cells are done it orders the rows as the task orders its
examples and writes the records as the local engine does (`effbench.runner.write_records`). Numbers do not
depend on how the work was cut, so they are the local engine's.

Cells are handed out longest first by an estimated cost: the tokens of the cell's examples times its
explainer's weight (`EXPLAINER_COST_WEIGHTS`). A free worker takes the longest pending cell of the shard
it worked on last, if one is left, else the longest pending cell: the full-input and leave-one-out passes
of a shard do not depend on the explainer, and the worker keeps them in its model's perturbation cache
until it moves to another shard, as the local engine keeps them for a batch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from effbench.errors import EffbenchError
from effbench.runner import add_cost, length_bucketed_batches, open_forward_cache, token_lengths
from effbench.untrusted import excerpt

INSTALL_HINT = "pip install 'effbench[ray]'"
# A cell's cost per token of its examples, relative to an explainer that costs one forward pass: the
# board's metrics cost about the same for every explainer; a gradient adds a backward pass, integrated
# gradients one per step, leave-one-out the shard's leave-one-out passes when it is the first to ask for them.
EXPLAINER_COST_WEIGHTS = {"saliency": 1.3, "grad_x_input": 1.3, "integrated_gradients": 4.0, "leave_one_out": 2.0}
DEFAULT_COST_WEIGHT = 1.0
_ADDRESS_RE = re.compile(r"^(ray://)?(?P<host>\[[0-9A-Fa-f:]+\]|[A-Za-z0-9][A-Za-z0-9.-]*):(?P<port>\d{1,5})$")
CONNECT_TIMEOUT_SECONDS = 10


def import_ray():
    """The ray module, or a one-line error saying how to install it."""
    try:
        import ray
    except ImportError:
        raise EffbenchError(f"--engine ray needs Ray, which is not installed: {INSTALL_HINT}") from None
    return ray


@dataclass(frozen=True)
class Cell:
    """One explainer on one shard of one task: the shard's examples that still lack rows, and its cost estimate."""

    task: str
    explainer: str
    shard: int
    shards: int
    example_ids: tuple[str, ...]
    cost: float

    @property
    def shard_key(self) -> tuple[str, int]:
        return self.task, self.shard

    def describe(self) -> str:
        return f"{self.task} {self.explainer} shard {self.shard + 1}/{self.shards}"


def cost_weight(explainer: str) -> float:
    return EXPLAINER_COST_WEIGHTS.get(explainer, DEFAULT_COST_WEIGHT)


def plan_cells(task: str, runs: Sequence[dict], examples: Sequence, token_counts: Sequence[int],
               metric_names: Sequence[str], shard_size: int) -> tuple[list[Cell], int]:
    """The cells of one task with rows still to compute, and how many cells are already finished."""
    # the local engine's batches: examples of similar length, longest first
    shards = length_bucketed_batches(list(range(len(examples))), token_counts, shard_size)
    cells, finished = [], 0
    for run in runs:
        name = run["explainer"].name
        for number, positions in enumerate(shards):
            missing = [i for i in positions if run["store"].missing([examples[i].id], metric_names)]
            if not missing:
                finished += 1
                continue
            cost = sum(token_counts[i] for i in missing) * cost_weight(name)
            cells.append(Cell(task, name, number, len(shards), tuple(examples[i].id for i in missing), cost))
    return cells, finished


def next_cell(pending: list[Cell], held: tuple[str, int] | None) -> Cell:
    """Take from `pending` (longest first) the longest cell of the shard `held`, if any, else the longest."""
    chosen = next((cell for cell in pending if cell.shard_key == held), pending[0])
    pending.remove(chosen)
    return chosen


def check_address(address: str) -> None:
    """A one-line error for an address that is not host:port (or ray://host:port), or where nothing listens."""
    import socket

    match = _ADDRESS_RE.match(address)
    if address == "auto":
        return
    if not match or not 0 < int(match["port"]) < 65536:
        raise EffbenchError(f"--address {excerpt(address)} is not a Ray address: give HOST:PORT (the head node's, "
                            "as `ray start --head` prints it), ray://HOST:PORT, or auto")
    host = match["host"].strip("[]")
    try:
        socket.create_connection((host, int(match["port"])), timeout=CONNECT_TIMEOUT_SECONDS).close()
    except OSError as error:
        raise EffbenchError(f"cannot reach a Ray cluster at {address}: {error.strerror or error}; start one with "
                            "`ray start --head`, or leave out --address to run on a local Ray") from None


def actor_resources(device: str, workers: int, cluster_gpus: float, threads: int = 1) -> dict[str, float]:
    """Each worker's share of the cluster: a CPU per torch thread, and on CUDA an equal share of a GPU, which
    Ray assigns."""
    if not device.startswith("cuda"):
        return {"num_cpus": threads}
    if device != "cuda":
        raise EffbenchError(f"--device {excerpt(device)}: with --engine ray, Ray assigns each worker its GPU; "
                            "give --device cuda")
    if cluster_gpus < 1:
        raise EffbenchError("--device cuda: the Ray cluster has no GPU")
    per_gpu = -(-workers // int(cluster_gpus))  # workers sharing one GPU
    return {"num_cpus": threads, "num_gpus": 1 / per_gpu}


class Worker:
    """A Ray actor: runs cells, keeping each task's model loaded and the explainer-independent passes of the
    shard it worked on last. Its methods run in the actor's process (ray.remote wraps the class)."""

    def __init__(self, threads: int = 1, driver_sys_path: Sequence[str] = ()):
        import torch

        torch.set_num_threads(threads)
        # a local Ray's workers find the explainer modules the driver found (a "package.module:Class" entry)
        sys.path.extend(entry for entry in driver_sys_path if entry not in sys.path and os.path.isdir(entry))
        self._tasks: dict[str, Any] = {}  # task name -> (TaskData, example id -> Example)
        self._models: dict[tuple, Any] = {}
        self._components: dict[tuple, Any] = {}
        self._held: tuple[str, int] | None = None

    def run_cell(self, cell: Cell, config, explainer_spec: str, explainer_params: Mapping[str, Any],
                 metric_specs: Mapping[str, Mapping[str, Any]], expected_identity: dict) -> dict:
        from effbench.runner import _input_facts, _release_freed_memory, new_cost, score_batch

        if cell.shard_key != self._held:  # another shard: no pass of the one before is asked for again
            for model in self._models.values():
                model.perturbation_cache.clear()
            _release_freed_memory()
            self._held = cell.shard_key
        task, by_id = self._task(cell.task, expected_identity["task"])
        model = self._model(task, config, expected_identity["model"])
        explainer, metrics = self._components_for(cell.task, explainer_spec, explainer_params, metric_specs, config)
        examples = [by_id[example_id] for example_id in cell.example_ids]
        cost = new_cost([metric.name for metric in metrics])
        where = f"shard {cell.shard + 1}/{cell.shards} of task {cell.task} on a Ray worker"
        rows = []
        for start in range(0, len(examples), config.batch_size):
            batch = model.make_batch(examples[start: start + config.batch_size])
            rows += score_batch(model, explainer, batch, _input_facts(model, batch), metrics, config, where, cost)
        return {"rows": rows, "cost": cost}

    def _task(self, name: str, expected: dict):
        if name not in self._tasks:
            from effbench.tasks import load_task

            task = load_task(name)
            found = {"version": task.card.version, "card_hash": task.card_hash, "data_hash": task.data_hash}
            if any(expected[key] != value for key, value in found.items()):
                raise EffbenchError(f"task {name} on this Ray worker is not the driver's (its card or data differs: "
                                    f"data hash {task.data_hash[:12]} here, {expected['data_hash'][:12]} there); give "
                                    "every node the same task cards and data")
            self._tasks[name] = task, {example.id: example for example in task.test}
        return self._tasks[name]

    def _model(self, task, config, expected: dict):
        key = (task.card.name, config.model, config.model_kind, config.device, config.dtype)
        if key not in self._models:
            from effbench.models.loading import load_own_model
            from effbench.models.reference import load_reference_model

            if config.model is not None:
                model = load_own_model(config.model, task, device=config.device, dtype=config.dtype)
            else:  # trained by the driver, which trains what is not cached; a node without it must not train another
                model, _ = load_reference_model(task, config.model_kind, device=config.device, dtype=config.dtype,
                                                train_if_missing=False, progress=False)
            if model.provenance.identity != expected:
                raise EffbenchError(f"the model of task {task.card.name} on this Ray worker has checkpoint sha256 "
                                    f"{str(model.provenance.checkpoint_sha256)[:12]}, the driver's "
                                    f"{str(expected.get('checkpoint_sha256'))[:12]}; give every node the same "
                                    "model (effbench models export / import)")
            # shared with the other workers and the local engine (its own key per thread count)
            model.forward_cache = open_forward_cache(config)
            self._models[key] = model
        return self._models[key]

    def _components_for(self, task: str, spec: str, params, metric_specs, config):
        from effbench.runner import run_components

        key = (task, spec, json.dumps(params, sort_keys=True, default=str))
        if key not in self._components:
            # made once per task, as the local engine makes them once per run of a task
            [explainer], metrics = run_components({spec: params}, metric_specs, config)
            self._components[key] = explainer, metrics
        return self._components[key]


def run_on_ray(jobs: Sequence[tuple[str, Any]], explainers: Mapping[str, Mapping[str, Any]],
               metrics: Mapping[str, Mapping[str, Any]], *, address: str | None = None, workers: int | None = None,
               progress: bool = True) -> dict[str, list[dict]]:
    """Run every (task, RunConfig) of `jobs` with `explainers` (the name or "package.module:Class" the runner
    loads -> parameters) and `metrics` on Ray; write and return each task's records, as `evaluate` does.

    Without `address` a local Ray with `workers` CPUs (default: this machine's) is started and stopped;
    with one, the cluster there is used (`workers` default: its CPUs). A Ray already initialised in this
    process is used as it is.
    """
    from effbench.runner import open_stores, prepare_task, run_components, write_records

    ray = import_ray()
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise EffbenchError(f"--workers must be an integer of at least 1, got {excerpt(workers)}")
    if address is not None:
        check_address(address)

    prepared, cells, finished, specs = {}, [], 0, {}
    with contextlib.ExitStack() as locks:
        for task_name, config in jobs:
            explainer_objects, metric_objects = run_components(explainers, metrics, config)
            # what a worker loads for the explainer whose records carry this name
            specs.update({explainer.name: item for explainer, item in zip(explainer_objects, explainers.items())})
            # the driver's copy of the model names the runs and counts tokens; the workers run it on config.device
            task_run = prepare_task(task_name, explainer_objects, metric_objects,
                                    dataclasses.replace(config, device="cpu"), progress=progress)
            open_stores(task_run.runs, locks)
            token_counts = token_lengths(task_run.model, task_run.examples)
            task_cells, task_finished = plan_cells(task_name, task_run.runs, task_run.examples, token_counts,
                                                   [metric.name for metric in metric_objects], config.batch_size)
            prepared[task_name] = (config, task_run, metric_objects)
            cells += task_cells
            finished += task_finished

        records: dict[str, list[dict]] = {}

        def finish(task_name: str) -> None:
            """Order each run's rows as the task orders its examples, and write the task's records."""
            config, task_run, metric_objects = prepared[task_name]
            records[task_name] = write_records(task_run.task, task_run.model, task_run.degenerate, task_run.examples,
                                               task_run.runs, metric_objects, config)

        if cells:
            _dispatch(ray, cells, finished, prepared, specs, metrics, finish, address=address, workers=workers,
                      progress=progress)
        for task_name, _ in jobs:
            if task_name not in records:
                finish(task_name)
    return {task_name: records[task_name] for task_name, _ in jobs}


def _dispatch(ray, cells: list[Cell], finished: int, prepared: dict, specs: dict, metrics, finish, *,
              address: str | None, workers: int | None, progress: bool) -> None:
    """Run the cells on worker actors, appending each cell's rows to its record when it returns."""
    import logging

    from tqdm.auto import tqdm

    devices = {config.device for config, _, _ in prepared.values()}
    if len(devices) != 1:
        raise EffbenchError(f"the Ray engine runs every task on one device, not {', '.join(sorted(devices))}")
    started_here = not ray.is_initialized()
    if started_here:
        if address is None:
            workers = workers or _local_cpus()
            threads = max(1, _local_cpus() // workers)  # fewer workers than CPUs: each runs more torch threads
            ray.init(address="local", num_cpus=workers * threads, include_dashboard=False, log_to_driver=False,
                     logging_level=logging.ERROR)
        else:
            threads = 1  # the nodes' sizes are the cluster's: one CPU per worker fits any of them
            try:
                ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR)
            except Exception as error:  # Ray raises ConnectionError, RuntimeError or its own errors here
                first_line = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
                # Ray 2.59 and later start clusters with token authentication, but a driver given an address
                # sends no token unless told to
                hint = ("; if the cluster uses token authentication (`ray start` does, from Ray 2.59), set "
                        "RAY_AUTH_MODE=token, and RAY_AUTH_TOKEN to its token (`ray get-auth-token` on its head "
                        "node) unless ~/.ray/auth_token holds it") if os.environ.get("RAY_AUTH_MODE") != "token" else ""
                raise EffbenchError(f"cannot connect to the Ray cluster at {address}: {first_line}{hint}") from None
    else:
        threads = 1
    actors = []
    try:
        resources = ray.cluster_resources()
        cluster_cpus = int(resources.get("CPU", 0))
        workers = workers or max(1, cluster_cpus)
        if workers > cluster_cpus:
            raise EffbenchError(f"--workers {workers} is more than the Ray cluster's {cluster_cpus} CPUs")
        options = actor_resources(devices.pop(), workers, resources.get("GPU", 0), threads)
        sys_path = list(sys.path) if started_here and address is None else []
        remote_worker = ray.remote(Worker)
        actors = [remote_worker.options(**options).remote(threads, sys_path) for _ in range(min(workers, len(cells)))]

        pending = sorted(cells, key=lambda cell: -cell.cost)  # stable: ties keep task, explainer, shard order
        left = {task: sum(cell.task == task for cell in cells) for task in prepared}
        held: list[tuple[str, int] | None] = [None] * len(actors)
        in_flight: dict[Any, tuple[int, Cell]] = {}
        idle = list(range(len(actors)))
        with tqdm(total=finished + len(cells), initial=finished, desc="ray", unit="cell", disable=not progress) as bar:
            while pending or in_flight:
                while idle and pending:
                    index = idle.pop(0)
                    cell = next_cell(pending, held[index])
                    held[index] = cell.shard_key
                    config, task_run, _ = prepared[cell.task]
                    spec, params = specs[cell.explainer]
                    identity = _run_named(task_run.runs, cell.explainer)["identity"]
                    reference = actors[index].run_cell.remote(cell, config, spec, params, dict(metrics), identity)
                    in_flight[reference] = (index, cell)
                [done], _ = ray.wait(list(in_flight), num_returns=1)
                index, cell = in_flight.pop(done)
                result = _result(ray, done, cell)
                run = _run_named(prepared[cell.task][1].runs, cell.explainer)
                run["store"].append(result["rows"])  # persisted now: an interrupted run keeps it
                add_cost(run, result["cost"])
                bar.set_postfix_str(cell.describe(), refresh=False)
                bar.update(1)
                left[cell.task] -= 1
                if left[cell.task] == 0:
                    finish(cell.task)
                idle.append(index)
    finally:
        for actor in actors:
            ray.kill(actor)
        if started_here:
            ray.shutdown()


def _local_cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _result(ray, reference, cell: Cell) -> dict:
    """A cell's result; its failure as one line (the rows of the cells finished before are saved)."""
    saved = "the rows of finished cells are saved; run again to resume"
    try:
        return ray.get(reference)
    except ray.exceptions.RayTaskError as error:
        cause = getattr(error, "cause", None)
        if isinstance(cause, EffbenchError):
            raise EffbenchError(str(cause)) from None
        what = f"{type(cause).__name__}: {excerpt(str(cause))}" if cause is not None else str(error).splitlines()[0]
        raise EffbenchError(f"{cell.describe()} failed on a Ray worker: {what}; {saved}") from None
    except ray.exceptions.RayError as error:  # the worker died (killed, out of memory) or its node was lost
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise EffbenchError(f"the Ray worker computing {cell.describe()} was lost ({type(error).__name__}: "
                            f"{excerpt(first_line)}); {saved}") from None


def _run_named(runs: Sequence[dict], explainer: str) -> dict:
    return next(run for run in runs if run["explainer"].name == explainer)
