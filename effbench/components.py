"""What explainers and metrics share: a registry name, an integer version, a citation and parameters."""

from __future__ import annotations

import copy
from typing import Any, ClassVar

from effbench.errors import EffbenchError


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
