"""scripts/board_seconds.py: seconds per example of a board's components, per task and checkout."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "board_seconds.py"


def _run(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *arguments], capture_output=True, text=True, timeout=600)


def test_two_checkouts_on_the_toy_task_give_a_table_and_json(toy_env):
    common = ["--examples", "toy=4", "--explainers", "random,raw_attention", "--metrics", "necessity,sparsity",
              "--model-kind", "tiny", "--checkout", f"first={REPO}"]
    table = _run(*common, "--by-component")
    assert table.returncode == 0, table.stderr
    assert "| toy" in table.stdout and "first s/example" in table.stdout
    assert "toy: seconds per example by component" in table.stdout
    for component in ("random", "raw_attention", "necessity", "sparsity"):
        assert f"| {component}" in table.stdout
    machine = _run(*common, "--checkout", f"second={REPO}", "--json", "--rerun")
    assert machine.returncode == 0, machine.stderr
    results = json.loads(machine.stdout)["results"]["toy"]
    assert set(results) == {"first", "second"}
    for result in results.values():
        assert result["examples"] == 4 and result["seconds_per_example"] > 0
        assert result["rerun_seconds_per_example"] > 0
        assert set(result["seconds_by_component"]) == {"random", "raw_attention", "necessity", "sparsity"}


def test_a_bad_pair_is_one_line():
    done = _run("--checkout", "nowhere", "--examples", "toy=4")
    assert done.returncode != 0
    assert "checkout 'nowhere' is not NAME=VALUE" in done.stderr
