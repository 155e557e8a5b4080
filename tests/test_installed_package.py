"""The installed tool: build the sdist and the wheel from it, install into a fresh venv, use it from elsewhere.

The fresh venv takes effbench's dependencies from this environment (a .pth line to its site-packages,
whose own .pth files, the editable install among them, are not processed), so it sees only the wheel's effbench.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest

from effbench.paths import REPO_ROOT

SHIPPED = ("tasks", "metrics", "leaderboards")


def tracked_shipped_files() -> set[str]:
    listed = subprocess.run(["git", "ls-files", *SHIPPED], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    return {f"effbench/_shipped/{line}" for line in listed.stdout.splitlines()
            if not line.endswith(".gitignore") and not is_carried_checkpoint(line)}


def is_carried_checkpoint(path: str) -> bool:
    """A model export a board folder carries in the repository (about 90 MB each): not for the package."""
    parts = Path(path).parts
    return len(parts) == 4 and parts[0] == "leaderboards" and parts[2] == "checkpoints"


@pytest.fixture(scope="module")
def installed(tmp_path_factory, real_tasks_cache):
    root = tmp_path_factory.mktemp("installed")
    dist = root / "dist"
    subprocess.run([sys.executable, "-m", "build", "--sdist", "--no-isolation", "--outdir", str(dist), str(REPO_ROOT)],
                   check=True, capture_output=True)
    [sdist] = dist.glob("effbench-*.tar.gz")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist),
                    str(sdist)], check=True, capture_output=True)
    [wheel] = dist.glob("effbench-*.whl")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q", str(wheel)],
                   check=True, capture_output=True)
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    (site / "effbench-test-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    elsewhere = root / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "EFFBENCH_CACHE": str(real_tasks_cache), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "PYTHONPATH": ""}
    env.pop("EFFBENCH_TASK_DIRS", None)

    def run(*argv: str, timeout: int = 600) -> subprocess.CompletedProcess:
        return subprocess.run([str(venv / "bin" / argv[0]), *argv[1:]], cwd=elsewhere, env=env, capture_output=True,
                              text=True, timeout=timeout)

    return {"wheel": wheel, "sdist": sdist, "site": site, "run": run, "cwd": elsewhere}


def package_files(site: Path) -> dict[str, int]:
    return {str(p.relative_to(site)): p.stat().st_mtime_ns for p in (site / "effbench").rglob("*")
            if p.is_file() and "__pycache__" not in p.parts}


def test_the_wheel_carries_cards_metric_folders_and_boards(installed):
    with zipfile.ZipFile(installed["wheel"]) as wheel:
        shipped = {name for name in wheel.namelist() if name.startswith("effbench/_shipped/")}
    assert shipped == tracked_shipped_files()  # every tracked file, and nothing a local run left there
    with tarfile.open(installed["sdist"]) as sdist:
        assert not any(is_carried_checkpoint(name.split("/", 1)[1]) for name in sdist.getnames() if "/" in name)
    records = {name for name in shipped if name.startswith("effbench/_shipped/leaderboards/standard/records/mr-sentences/random-")}
    assert any(name.endswith("/per_example.jsonl") for name in records) and any(name.endswith("/record.json") for name in records)
    assert {f"effbench/_shipped/leaderboards/{board}/board.yaml" for board in ("quick", "standard", "field", "trigger")} <= shipped


def test_the_installed_tool_works_from_an_unrelated_folder_and_writes_nothing_into_itself(installed):
    run, site = installed["run"], installed["site"]
    before = package_files(site)

    imported = run("python", "-c", "import effbench; print(effbench.__file__)")
    assert imported.returncode == 0 and imported.stdout.strip().startswith(str(site)), imported.stderr

    listed = run("effbench", "tasks", "--format", "json")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert [row["task"] for row in rows] == ["bbc-news", "mr-reviews", "mr-sentences", "mr-sentences-trigger", "spam",
                                             "tweets", "uncertainty"]

    ran = run("effbench", "run", "--task", "mr-sentences", "--model-kind", "tiny", "--explainer", "random",
              "--metric", "sparsity", "--limit", "3", "--quiet", "--format", "json")
    assert ran.returncode == 0, ran.stderr
    [record] = json.loads(ran.stdout)
    assert record["results"]["sparsity"]["n"] == 3 and record["environment"]["git_sha"] is None
    assert (installed["cwd"] / "runs" / "mr-sentences").is_dir()  # under the current folder

    report = installed["cwd"] / "standard-report"
    built = run("effbench", "leaderboard", "build", "standard", "--output", str(report), "--quiet")
    assert built.returncode == 0, built.stderr
    committed = REPO_ROOT / "leaderboards" / "standard"
    for name in ("results.csv", "README.md"):
        assert (report / name).read_text() == (committed / name).read_text()

    metric = run("python", "-c", "import evaluate, effbench\n"
                 "necessity = evaluate.load(effbench.metric_module('necessity'))\n"
                 "print(round(necessity.compute(full_probability=[0.95], "
                 "perturbed_probabilities=[[0.55, 0.55, 0.55, 0.55, 0.45]])['necessity'], 6))")
    assert metric.returncode == 0 and metric.stdout.strip() == "0.42", metric.stderr

    assert package_files(site) == before
