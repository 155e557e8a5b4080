"""effbench: score explanations of transformer text classifiers (efficient attention and every competitor)."""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from effbench.errors import EffbenchError, warn

DEFAULT_TASKS = ("mr-sentences", "mr-reviews", "bbc-news", "tweets")
DEFAULT_EXPLAINERS = ("raw_attention",)
DEFAULT_METRICS = ("necessity",)
FORMATS = ("markdown", "json", "csv")
MODEL_KINDS = ("minilm", "tiny")


def info(message: str) -> None:
    """A line for the person at the terminal, on stderr: stdout carries only the table or the JSON."""
    print(message, file=sys.stderr)


# ---- output ------------------------------------------------------------------------------------------


def render(rows: list[dict], fmt: str, *, document=None, floatfmt: str = "g") -> str:
    """Rows as a Markdown table, CSV, or JSON (`document` when given, else the rows)."""
    if fmt == "json":
        from effbench.records import json_safe

        return json.dumps(json_safe(rows if document is None else document), indent=2, ensure_ascii=False,
                          default=str, allow_nan=False)
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]) if rows else [], lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return buffer.getvalue().rstrip("\n")
    from tabulate import tabulate

    return tabulate(rows, headers="keys", tablefmt="github", floatfmt=floatfmt)


# ---- parameters -----------------------------------------------------------------------------------------


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer >= 1")
    return value


def _parameter(text: str) -> tuple[str | None, str, str]:
    """`NAME=VALUE` or `EXPLAINER.NAME=VALUE` -> (explainer or None, name, value)."""
    key, sep, value = text.partition("=")
    target, _, name = key.rpartition(".")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=VALUE or EXPLAINER.NAME=VALUE")
    return target or None, name, value


def explainer_parameters(explainer_names: Sequence[str], pairs: Sequence[tuple[str | None, str, str]]) -> dict[str, dict]:
    """Each explainer's parameters: `EXPLAINER.NAME=VALUE` sets one, `NAME=VALUE` every explainer that has NAME."""
    import yaml

    from effbench.explainers import explainers

    params: dict[str, dict] = {name: {} for name in explainer_names}
    # EXPLAINER is what the run was given (a name or package.module:Class) or the explainer's own name
    aliases = {**{explainers.get(spec).name: spec for spec in explainer_names}, **{spec: spec for spec in explainer_names}}
    for target, name, value in pairs:
        parsed = yaml.safe_load(value)
        if target is not None:
            target = aliases.get(target, target)
            if target not in params:
                raise EffbenchError(f"--explainer-param {target}.{name}: {target!r} is not an explainer of this run "
                                    f"({', '.join(explainer_names)})")
            params[target][name] = parsed
            continue
        having = [explainer for explainer in explainer_names if name in explainers.get(explainer).defaults]
        if not having:
            raise EffbenchError(f"--explainer-param {name}: no explainer of this run ({', '.join(explainer_names)}) "
                                f"has a parameter {name!r}; see `effbench explainers`")
        for explainer in having:
            params[explainer][name] = parsed
    return params


# ---- commands -------------------------------------------------------------------------------------------


def cmd_tasks(args) -> None:
    from effbench.tasks import describe_tasks

    print(render(describe_tasks(args.task or None), args.format))


def _component_rows(registry) -> list[dict]:
    from effbench.leaderboard import bibtex_key

    rows = []
    for name in registry.names():
        component = registry.get(name)
        rows.append({"name": name, "version": component.version,
                     "parameters": ", ".join(f"{key}={value!r}" for key, value in component.defaults.items()) or "-",
                     "citation": bibtex_key(component.citation) or "-",
                     "builtin": registry.is_builtin(name)})
    return rows


def cmd_explainers(args) -> None:
    from effbench.explainers import explainers

    print(render(_component_rows(explainers), args.format))


def cmd_metrics(args) -> None:
    from effbench.metrics import metrics

    rows = _component_rows(metrics)
    for row in rows:
        metric = metrics.get(row["name"])
        row["better"] = getattr(metric, "direction", "-")
        row["family"] = getattr(metric, "family", "-")
    print(render(rows, args.format))


def cmd_train(args) -> None:
    from effbench.models.reference import degeneracy_on_test_split, degenerate_warning, load_reference_model
    from effbench.tasks import load_task
    from effbench.tasks.planting import trigger_warning

    kind = args.model_kind
    if args.kind is not None:
        warn("--kind is deprecated; use --model-kind (the same in every subcommand)")
        kind = args.kind
    for name in args.task:
        task = load_task(name)
        overrides = {"epochs": args.epochs} if args.epochs is not None else {}
        _, record = load_reference_model(task, kind, seed=args.seed, device=args.device, **overrides)
        print(f"{name} ({kind}): test accuracy {record['test_accuracy']:.3f} on {record['test_examples']} "
              f"examples, trained in {record['train_seconds']:.0f} s on {record['train_examples']} examples")
        check = degeneracy_on_test_split(record, [example.label for example in task.test])
        # a training.json written before effbench recorded macro-F1 and recall lacks them
        macro_f1 = f"{record['macro_f1']:.3f}" if "macro_f1" in record else "unknown"
        recalls = ", ".join(f"{label} {recall:.3f}" for label, recall in record.get("per_class_recall", {}).items())
        print(f"  majority-class rate {check['majority_rate']:.3f}, macro-F1 {macro_f1}, "
              f"recall per class: {recalls or 'unknown'}")
        warning = degenerate_warning(name, check["test_accuracy"], check["majority_rate"], check["measured_on"])
        if warning:
            warn(warning, loud=True)
        if "trigger" in record:
            trigger = record["trigger"]
            print(f"  planted trigger {trigger['token']!r}: accuracy {trigger['accuracy_with_trigger']:.3f} on "
                  f"{trigger['triggered_test_examples']} triggered test examples, "
                  f"{trigger['flip_rate_without_trigger']:.3f} of them change without it")
            warning = trigger_warning(name, record)
            if warning:
                warn(warning, loud=True)


def _run_config(args, **extra):
    from effbench.runner import RunConfig

    return RunConfig(seed=args.seed, limit=args.limit, batch_size=args.batch_size, device=args.device,
                     dtype=args.dtype, output_dir=Path(args.output), model_kind=args.model_kind,
                     perturbation=args.perturbation, model=args.model, forward_cache_gib=args.forward_cache_gib,
                     **extra)


def cmd_run(args) -> None:
    from effbench.runner import evaluate, results_rows

    names = list(dict.fromkeys(args.explainer or DEFAULT_EXPLAINERS))
    metric_names = list(dict.fromkeys(args.metric or DEFAULT_METRICS))
    explainers = explainer_parameters(names, args.explainer_param or [])
    config = _run_config(args)
    records = evaluate(args.task or list(DEFAULT_TASKS), explainers, metric_names, config,
                       progress=not args.quiet)
    print(render(results_rows(records), args.format, document=records))
    info(f"run records written under {config.output_dir}/")


def cmd_diagnose(args) -> None:
    from effbench.diagnose import LEGEND, diagnose
    from effbench.models.loading import load_model
    from effbench.tasks import load_task

    if args.limit < 1 or args.batch_size < 1:
        raise EffbenchError(f"--limit and --batch-size must be at least 1 (got {args.limit} and {args.batch_size})")
    task = load_task(args.task)
    model = load_model(task, args.model, model_kind=args.model_kind, device=args.device, progress=not args.quiet)
    examples = task.test[: args.limit]
    rows = diagnose(model, examples, batch_size=args.batch_size, progress=not args.quiet)
    info(f"identifiability diagnostics: task {args.task}, model {model.name}, {len(examples)} test examples")
    document = {"task": args.task, "model": model.provenance.recorded(), "examples": len(examples), "layers": rows}
    print(render(rows, args.format, document=document, floatfmt=".3g"))
    if args.format == "markdown":
        print("\n" + LEGEND)


def cmd_models(args) -> None:
    from effbench.models import transfer
    from effbench.tasks import load_task

    if args.action == "import":
        folder, record = transfer.import_checkpoint(Path(args.file))
        print(f"imported {record['task']} ({record['kind']}) checkpoint sha256 {record['checkpoint_sha256']} into {folder}")
        return
    if args.action == "list":
        print(render(transfer.cached_checkpoints(), args.format))
        return
    task = load_task(args.task)
    if args.action == "export":
        path, record = transfer.export_checkpoint(task, args.model_kind, args.to)
        print(f"exported {task.card.name} ({args.model_kind}) checkpoint sha256 {record['checkpoint_sha256']} to {path}")
    elif args.action == "pull":
        folder, record = transfer.pull_checkpoint(task, args.model_kind)
        print(f"pulled {task.card.name} ({args.model_kind}) checkpoint sha256 {record['checkpoint_sha256']} into {folder}")


def cmd_leaderboard(args) -> None:
    from effbench.leaderboard import board_workspace, build_board, format_summary, run_board
    from effbench.leaderboard.running import check_engine

    if args.action == "run":  # before the board folder is made
        check_engine(args.engine, args.address, args.workers)
    board_dir = board_workspace(args.board, output=args.output, progress=not args.quiet)
    if args.action == "run":
        run_board(board_dir, tasks=args.task, device=args.device, dtype=args.dtype, model=args.model,
                  forward_cache_gib=args.forward_cache_gib, progress=not args.quiet, engine=args.engine,
                  address=args.address, workers=args.workers)
    print(format_summary(build_board(board_dir)))


# ---- the parser -------------------------------------------------------------------------------------


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows each flag's default, where it has one worth showing."""

    def _get_help_string(self, action):
        if action.default in (None, False, argparse.SUPPRESS):
            return action.help
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    from effbench import __version__
    from effbench.runner import DTYPES

    parser = argparse.ArgumentParser(prog="effbench", description=__doc__, formatter_class=_Formatter)
    parser.add_argument("--version", action="version", version=f"effbench {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_text: str, handler, *parents: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text, parents=list(parents),
                                  formatter_class=_Formatter)
        sub.set_defaults(handler=handler)
        return sub

    fmt = argparse.ArgumentParser(add_help=False)
    fmt.add_argument("--format", choices=FORMATS, default="markdown", help="output: a Markdown table, JSON or CSV")
    quiet = argparse.ArgumentParser(add_help=False)
    quiet.add_argument("--quiet", action="store_true", help="no progress bars")
    device = argparse.ArgumentParser(add_help=False)
    device.add_argument("--device", default="cpu", help="torch device for the model: cpu, cuda, cuda:1, ...")
    device.add_argument("--forward-cache-gib", type=float, default=2.0, metavar="GIB",
                        help="size of the on-disk cache of perturbed-input probabilities, which leave-one-out, "
                             "resumes and re-runs share ($EFFBENCH_FORWARD_CACHE, else in ~/.cache/effbench); 0: none")
    dtype = argparse.ArgumentParser(add_help=False)
    dtype.add_argument("--dtype", choices=DTYPES, default="float32",
                       help="dtype of the model's forward passes (part of a run's identity; a board ranks one dtype)")
    model = argparse.ArgumentParser(add_help=False)
    model.add_argument("--model", metavar="PATH_OR_HUB_ID",
                       help="your own classifier (a folder saved with save_pretrained, or a hub id org/name[@revision]) "
                            "instead of the task's reference model")
    model.add_argument("--model-kind", choices=MODEL_KINDS, default="minilm",
                       help="the reference model: minilm (the fine-tuned packaged encoder) or tiny (trained from scratch)")

    tasks = command("tasks", "list the tasks with rows, classes, split sizes and license", cmd_tasks, fmt)
    tasks.add_argument("task", nargs="*", help="only these tasks (default: every card found)")

    command("explainers", "list the explainers: names, versions, parameters and citations", cmd_explainers, fmt)
    command("metrics", "list the metrics: names, versions, parameters, direction and citations", cmd_metrics, fmt)

    train = command("train", "train (or reuse) the reference model of a task", cmd_train, device)
    train.add_argument("--task", nargs="+", action="extend", required=True, help="task names or card paths")
    train.add_argument("--model-kind", choices=MODEL_KINDS, default="minilm",
                       help="minilm (fine-tune the packaged encoder) or tiny (a small BERT from scratch)")
    train.add_argument("--kind", choices=MODEL_KINDS, help=argparse.SUPPRESS)  # deprecated alias of --model-kind
    train.add_argument("--seed", type=int, default=0, help="training seed")
    train.add_argument("--epochs", type=_positive_int, help="override the task card's epochs (at least 1)")

    run = command("run", "score explainers with metrics on tasks; writes run records", cmd_run,
                  model, device, dtype, fmt, quiet)
    run.add_argument("--task", nargs="+", action="extend",
                     help=f"task names or card paths (default: {' '.join(DEFAULT_TASKS)})")
    run.add_argument("--explainer", nargs="+", action="extend", metavar="EXPLAINER",
                     help=f"explainer names or package.module:Class; repeat the flag or list several "
                          f"(default: {' '.join(DEFAULT_EXPLAINERS)}; see `effbench explainers`)")
    run.add_argument("--explainer-param", action="append", type=_parameter, metavar="[EXPLAINER.]NAME=VALUE",
                     help="an explainer parameter (a YAML value): EXPLAINER.NAME=VALUE sets it for one explainer, "
                          "NAME=VALUE for every explainer of the run that has it; e.g. efficient_attention.canonical=minnorm")
    run.add_argument("--metric", nargs="+", action="extend", metavar="METRIC",
                     help=f"metric names; repeat the flag or list several (default: {' '.join(DEFAULT_METRICS)}; "
                          "see `effbench metrics`)")
    run.add_argument("--limit", type=int, help="evaluate only the first N test examples (default: all)")
    run.add_argument("--batch-size", type=int, default=16, help="examples per batch")
    run.add_argument("--seed", type=int, default=0, help="seed of the seeded explainers and of the bootstrap")
    run.add_argument("--perturbation", choices=("remove", "mask"), default="remove",
                     help="how metrics erase tokens: remove (delete and re-pack) or mask (the mask token)")
    run.add_argument("--output", default="runs", help="folder for the run records")

    diag = command("diagnose", "identifiability diagnostics of efficient attention on a task", cmd_diagnose,
                   model, device, fmt, quiet)
    diag.add_argument("--task", required=True, help="a task name or card path")
    diag.add_argument("--limit", type=int, default=100, help="the first N test examples")
    diag.add_argument("--batch-size", type=int, default=16, help="examples per batch")

    models = command("models", "move reference models between machines: export, import, pull, list", cmd_models)
    actions = models.add_subparsers(dest="action", required=True, metavar="ACTION")

    def action(name: str, help_text: str, *parents: argparse.ArgumentParser) -> argparse.ArgumentParser:
        return actions.add_parser(name, help=help_text, description=help_text, parents=list(parents),
                                  formatter_class=_Formatter)

    kind = argparse.ArgumentParser(add_help=False)
    kind.add_argument("--model-kind", choices=MODEL_KINDS, default="minilm", help="which reference model of the task")
    export = action("export", "write a task's cached reference model (weights, tokenizer, training record, "
                              "the data's license) into one file", kind)
    export.add_argument("task", help="a task name or card path")
    export.add_argument("--to", required=True, metavar="FILE", help="the file to write (.tar), or a folder (ending in /) "
                                                                       "to write effbench-TASK-FOLDER.tar into")
    imported = action("import", "verify an exported reference model against its sha256 and put it into the cache")
    imported.add_argument("file", help="a file written by `effbench models export`")
    pull = action("pull", "download a task's reference model from the Hub repository and revision its card names "
                          "(needs the network), verify it and put it into the cache", kind)
    pull.add_argument("task", help="a task name or card path")
    action("list", "the reference models in the cache", fmt)

    board = command("leaderboard", "run a board and build its report", cmd_leaderboard)
    board_actions = board.add_subparsers(dest="action", required=True, metavar="ACTION")
    where = argparse.ArgumentParser(add_help=False)
    where.add_argument("board", help="a board name (standard, quick) or a board folder")
    where.add_argument("--output", metavar="DIR",
                       help="the board folder to work in (default: ./leaderboards/BOARD, seeded from the packaged "
                            "board on first use; a board folder given as a path is used in place)")
    where.add_argument("--quiet", action="store_true", help="no progress bars")
    board_run = board_actions.add_parser(
        "run", parents=[where, device, dtype], formatter_class=_Formatter,
        help="evaluate the board's explainers into its records/ (reusing finished records), then build its report",
        description="evaluate the board's explainers into its records/ (reusing finished records), then build its report")
    board_run.add_argument("--task", nargs="+", action="extend", help="run only these tasks of the board")
    board_run.add_argument("--model", metavar="PATH_OR_HUB_ID",
                           help="your own classifier for the tasks run, instead of the board's model")
    board_run.add_argument("--engine", default="local", metavar="ENGINE",
                           help="local: the tasks one after the other in this process; ray: the board's (task, "
                                "explainer, shard) cells on Ray workers (pip install 'effbench[ray]'), into the same "
                                "records")
    board_run.add_argument("--address", metavar="HOST:PORT",
                           help="with --engine ray: the Ray cluster to run on (default: start a local Ray)")
    board_run.add_argument("--workers", type=_positive_int, metavar="N",
                           help="with --engine ray: the number of workers (default: one per CPU of this machine, "
                                "or of the cluster at --address); on a local Ray each runs an equal share of the CPUs "
                                "as torch threads")
    board_actions.add_parser("build", parents=[where], formatter_class=_Formatter,
                             help="check the board's records are comparable, rank, and write the report",
                             description="check the board's records are comparable, rank, and write the report "
                                         "(README.md, results.csv, results.json, index.html, citations.bib)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:  # --help, --version, or a usage error argparse has printed
        return exit_.code if isinstance(exit_.code, int) else 2
    try:
        args.handler(args)
    except EffbenchError as error:
        print(f"effbench: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("effbench: interrupted; finished work is saved and a rerun resumes from it", file=sys.stderr)
        return 130
    except OSError as error:  # disk full, a read-only or missing folder: what the machine refused, and where
        where = f": {error.filename}" if error.filename else ""
        print(f"effbench: error: {error.strerror or error}{where}; finished work is saved and a rerun resumes "
              "from it", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
