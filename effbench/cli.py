"""The `effbench` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from effbench.errors import EffbenchError

DEFAULT_TASKS = ("mr-sentences", "mr-reviews", "bbc-news", "tweets")


def _parameter(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=VALUE")
    return name, value


def _parse_value(value: str):
    import yaml

    return yaml.safe_load(value)


def _parameters(pairs: list[tuple[str, str]] | None) -> dict:
    return {name: _parse_value(value) for name, value in pairs or []}


def cmd_tasks(args) -> None:
    from tabulate import tabulate

    from effbench.tasks import describe_tasks

    rows = describe_tasks(args.task or None)
    print(tabulate(rows, headers="keys", tablefmt="github"))


def cmd_train(args) -> None:
    from effbench.models.reference import degeneracy_on_test_split, degenerate_warning, load_reference_model
    from effbench.tasks import load_task

    for name in args.task:
        task = load_task(name)
        overrides = {"epochs": args.epochs} if args.epochs else {}
        _, record = load_reference_model(task, args.kind, seed=args.seed, device=args.device, **overrides)
        print(f"{name} ({args.kind}): test accuracy {record['test_accuracy']:.3f} on {record['test_examples']} "
              f"examples, trained in {record['train_seconds']:.0f} s on {record['train_examples']} examples")
        check = degeneracy_on_test_split(record, [example.label for example in task.test])
        # a training.json written before effbench recorded macro-F1 and recall lacks them
        macro_f1 = f"{record['macro_f1']:.3f}" if "macro_f1" in record else "unknown"
        recalls = ", ".join(f"{label} {recall:.3f}" for label, recall in record.get("per_class_recall", {}).items())
        print(f"  majority-class rate {check['majority_rate']:.3f}, macro-F1 {macro_f1}, "
              f"recall per class: {recalls or 'unknown'}")
        warning = degenerate_warning(name, check["test_accuracy"], check["majority_rate"], check["measured_on"])
        if warning:
            print(f"effbench: WARNING: {warning}", file=sys.stderr)


def cmd_run(args) -> None:
    from effbench.runner import RunConfig, evaluate, format_results

    config = RunConfig(
        seed=args.seed, limit=args.limit, batch_size=args.batch_size, device=args.device, dtype=args.dtype,
        output_dir=Path(args.output), model_kind=args.model_kind, perturbation=args.perturbation,
    )
    explainer_params = _parameters(args.explainer_param)
    explainers = {name: explainer_params for name in args.explainer}
    records = evaluate(args.task, explainers, args.metric, config, progress=not args.quiet)
    print(format_results(records))
    print(f"\nrun records written under {config.output_dir}/")


def cmd_diagnose(args) -> None:
    from effbench.diagnose import diagnose, format_diagnostics
    from effbench.models.reference import load_reference_model
    from effbench.tasks import load_task

    task = load_task(args.task)
    model, _ = load_reference_model(task, args.model_kind, device=args.device)
    examples = task.test[: args.limit]
    rows = diagnose(model, examples, batch_size=args.batch_size)
    print(f"identifiability diagnostics: task {args.task}, model {model.name}, {len(examples)} test examples")
    print(format_diagnostics(rows))


def cmd_leaderboard(args) -> None:
    from effbench.leaderboard import build_board, format_summary, resolve_board_dir, run_board

    board_dir = resolve_board_dir(args.board)
    if args.action == "run":
        run_board(board_dir, tasks=args.task, device=args.device, progress=not args.quiet)
    print(format_summary(build_board(board_dir)))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="effbench", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    tasks = commands.add_parser("tasks", help="list the tasks with rows, classes, split sizes and license")
    tasks.add_argument("task", nargs="*", help="only these tasks")
    tasks.set_defaults(handler=cmd_tasks)

    train = commands.add_parser("train", help="train (or reuse) the reference model of a task")
    train.add_argument("--task", nargs="+", required=True)
    train.add_argument("--kind", default="minilm", help="minilm (fine-tuned packaged encoder) or tiny (from scratch)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--epochs", type=int, help="override the task card's epochs")
    train.add_argument("--device", default="cpu")
    train.set_defaults(handler=cmd_train)

    run = commands.add_parser("run", help="score explainers with metrics on tasks; writes run records")
    run.add_argument("--task", nargs="+", default=list(DEFAULT_TASKS))
    run.add_argument("--explainer", nargs="+", default=["raw_attention"])
    run.add_argument("--explainer-param", action="append", type=_parameter, metavar="NAME=VALUE",
                     help="a parameter for the explainers (YAML value), e.g. canonical=minnorm")
    run.add_argument("--metric", nargs="+", default=["necessity"])
    run.add_argument("--limit", type=int, help="evaluate only the first N test examples")
    run.add_argument("--batch-size", type=int, default=16)
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--device", default="cpu")
    run.add_argument("--dtype", default="float32")
    run.add_argument("--model-kind", default="minilm")
    run.add_argument("--perturbation", default="remove", help="remove (delete and re-pack) or mask")
    run.add_argument("--output", default="runs")
    run.add_argument("--quiet", action="store_true")
    run.set_defaults(handler=cmd_run)

    diag = commands.add_parser("diagnose", help="identifiability diagnostics of efficient attention on a task")
    diag.add_argument("--task", required=True)
    diag.add_argument("--limit", type=int, default=100)
    diag.add_argument("--batch-size", type=int, default=16)
    diag.add_argument("--model-kind", default="minilm")
    diag.add_argument("--device", default="cpu")
    diag.set_defaults(handler=cmd_diagnose)

    board = commands.add_parser("leaderboard", help="run a board and build its report")
    board.add_argument("action", choices=["run", "build"],
                       help="run: evaluate the board's explainers into its records/, then build; build: report from the records")
    board.add_argument("board", help="a board name under leaderboards/ (standard, quick) or a board folder")
    board.add_argument("--task", nargs="+", help="run only these tasks of the board")
    board.add_argument("--device", default="cpu")
    board.add_argument("--quiet", action="store_true")
    board.set_defaults(handler=cmd_leaderboard)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.handler(args)
    except EffbenchError as error:
        print(f"effbench: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("effbench: interrupted; finished work is saved and a rerun resumes from it", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
