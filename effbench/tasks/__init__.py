"""Tasks: cards in tasks/*.yaml -> deterministic, hashed train/test examples.

    from effbench.tasks import task_names, get_card, load_task, describe_tasks
    data = load_task("mr-sentences")   # TaskData: train, test, label_names, data_hash, card_hash
"""

from effbench.tasks.card import TaskCard, get_card, task_names
from effbench.tasks.loading import TaskData, describe_tasks, load_task

__all__ = ["TaskCard", "TaskData", "describe_tasks", "get_card", "load_task", "task_names"]
