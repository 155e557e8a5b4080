"""What explainers and metrics share: a registry name, an integer version, a citation and parameters."""

from __future__ import annotations

import copy
import re
from typing import Any, ClassVar

from effbench.errors import EffbenchError
from effbench.untrusted import excerpt

# a name becomes a folder name (runs/<task>/<explainer>-<hash>): nothing that can leave the output folder
COMPONENT_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,99}$")
COMPONENT_NAME_RULE = ("lower-case letters, digits, '.', '_' and '-', starting with a letter or digit, "
                       "at most 100 characters, no '..'")


def check_component_name(name: Any, kind: str = "component") -> str:
    """`name` if it is a valid explainer or metric name, else EffbenchError naming the rule."""
    if not isinstance(name, str) or not COMPONENT_NAME.match(name) or ".." in name:
        raise EffbenchError(f"{kind} name {excerpt(name)} is not allowed; a name has {COMPONENT_NAME_RULE}")
    return name


def check_component_version(version: Any, kind: str, name: str) -> int:
    """`version` if it is a positive int (not a bool), else EffbenchError."""
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise EffbenchError(f"{kind} {name}: version {excerpt(version)} is not allowed; a version is a positive integer")
    return version


class Component:
    """A named, versioned component whose parameters, defaults filled in, are recorded in every run.

    A subclass declares every parameter with its default in `defaults` and checks values in `validate`.
    """

    kind: ClassVar[str] = "component"  # for messages: "explainer", "metric"
    name: ClassVar[str]
    version: ClassVar[int]  # bumped whenever a change can change the numbers
    citation: ClassVar[str]  # a BibTeX entry
    defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, **params: Any):
        check_component_name(getattr(self, "name", None), self.kind)
        check_component_version(getattr(self, "version", None), self.kind, self.name)
        unknown = sorted(set(params) - set(self.defaults))
        if unknown:
            allowed = ", ".join(sorted(self.defaults)) or "none"
            raise EffbenchError(f"{self.kind} {self.name!r} has no parameter {', '.join(unknown)}; its parameters: {allowed}")
        self.params: dict[str, Any] = copy.deepcopy({**self.defaults, **params})
        self.validate()

    def validate(self) -> None:
        """Raise EffbenchError for a bad parameter value, naming it and what is allowed."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.params.items())})"
