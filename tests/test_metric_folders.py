"""The top-level metrics/<name>/ folders: one per registered metric, each loadable offline with evaluate,
its card in agreement with the metric class, and its golden values reproduced."""

from __future__ import annotations

import doctest
import re

import numpy as np
import pytest
import yaml

from effbench.metrics import get_metric, metrics
from effbench.paths import REPO_ROOT

METRICS_DIR = REPO_ROOT / "metrics"
BUILTIN_METRICS = sorted(name for name in metrics.names() if metrics.is_builtin(name))


def read_card(name: str) -> dict:
    """The card's front matter, plus its golden cases, citation and parameter table."""
    text = (METRICS_DIR / name / "README.md").read_text(encoding="utf-8")
    match = re.match(r"---\n(.*?)\n---\n", text, flags=re.DOTALL)
    assert match, f"metrics/{name}/README.md has no YAML front matter"
    card = yaml.safe_load(match.group(1))
    golden = re.search(r"## Golden values\n.*?```yaml\n(.*?)```", text, flags=re.DOTALL)
    citation = re.search(r"## Citation\n+```bibtex\n(.*?)\n```", text, flags=re.DOTALL)
    assert golden and citation, f"metrics/{name}/README.md needs a yaml block of golden values and a bibtex citation"
    card["golden"] = yaml.safe_load(golden.group(1))
    card["citation"] = citation.group(1)
    card["parameter_rows"] = re.findall(r"^\| `(\w+)` \| `(.*?)` \|", text, flags=re.MULTILINE)
    return card


@pytest.fixture(scope="module")
def evaluate_module():
    import evaluate

    def load(name: str):
        return evaluate.load(str(METRICS_DIR / name))

    return load


def test_registry_and_folders_agree_one_to_one():
    folders = sorted(path.name for path in METRICS_DIR.iterdir() if path.is_dir() and not path.name.startswith((".", "_")))
    assert folders == BUILTIN_METRICS
    for name in folders:
        assert (METRICS_DIR / name / f"{name}.py").is_file()
        assert (METRICS_DIR / name / "README.md").is_file()


@pytest.mark.parametrize("name", BUILTIN_METRICS)
def test_card_matches_the_metric_class(name):
    card = read_card(name)
    metric = get_metric(name)
    assert card["title"] == name == metric.name
    assert card["version"] == metric.version
    assert card["family"] == metric.family
    assert card["direction"] == metric.direction
    assert tuple(card["range"]) == tuple(metric.range)
    assert card["citation"].strip() == metric.citation.strip()
    # every parameter is documented, with its default as recorded
    documented = dict(card["parameter_rows"])
    assert set(documented) == set(metric.params)
    for parameter, value in metric.params.items():
        assert yaml.safe_load(documented[parameter]) == value, parameter


@pytest.mark.parametrize("name", BUILTIN_METRICS)
def test_golden_values_through_the_evaluate_module(name, evaluate_module):
    module = evaluate_module(name)
    assert module.name == name
    cases = read_card(name)["golden"]
    assert cases, f"metrics/{name}/README.md lists no golden values"
    for case in cases:
        result = module.compute(**case["inputs"])
        expected = case["expected"]
        assert result[name] == pytest.approx(expected[name], abs=1e-12), case["description"]
        np.testing.assert_allclose(result["per_example"], expected["per_example"], rtol=0, atol=1e-12)
        if "flags" in expected:
            assert result["flags"] == expected["flags"]


@pytest.mark.parametrize("name", BUILTIN_METRICS)
def test_docstring_examples_run(name, evaluate_module, monkeypatch):
    import evaluate

    monkeypatch.chdir(REPO_ROOT)  # the examples load "metrics/<name>", relative to the repository root
    module = evaluate_module(name)
    assert module.citation.strip() == get_metric(name).citation.strip()
    test = doctest.DocTestParser().get_doctest(module.inputs_description, {"evaluate": evaluate}, name, None, 0)
    assert test.examples, f"metrics/{name}/{name}.py has no examples"
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    runner.run(test)
    assert runner.summarize(verbose=False).failed == 0


def test_evaluate_module_rejects_inputs_of_the_wrong_shape(evaluate_module):
    with pytest.raises(ValueError, match="one perturbed probability per bin"):
        evaluate_module("necessity").compute(full_probability=[0.9], perturbed_probabilities=[[0.5, 0.5]])
    with pytest.raises(ValueError, match="distinct grid points"):
        evaluate_module("min_necessary").compute(num_tokens=[4], target=[1], grid_probabilities=[[[0.5, 0.5]]])


def test_evaluate_loads_local_folders_offline(tmp_path):
    """In a fresh process with the hub switched off, every folder loads and computes."""
    import os
    import subprocess
    import sys

    script = (
        "import evaluate\n"
        f"for name in {BUILTIN_METRICS!r}:\n"
        "    assert evaluate.load('metrics/' + name).name == name\n"
        "print(evaluate.load('metrics/sparsity').compute(scores=[[1.0, 0.0]])['sparsity'])\n"
    )
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "HF_MODULES_CACHE": str(tmp_path / "modules"),
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "0.5"
