"""README.md's recipes: the code blocks the tests run as written."""

import re

from effbench.paths import REPO_ROOT


README = (REPO_ROOT / "README.md").read_text(encoding="utf-8")


def readme_recipe(marker: str) -> str:
    """The fenced code block of README.md that follows the HTML comment `<!-- recipe: marker -->`."""
    match = re.search(rf"<!-- recipe: {re.escape(marker)} -->\s*```[a-z]*\n(.*?)\n```", README, re.DOTALL)
    assert match, f"README.md has no code block after <!-- recipe: {marker} -->"
    return match.group(1) + "\n"
