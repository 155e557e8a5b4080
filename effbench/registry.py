"""A small generic registry: built-ins registered lazily as "module:attr", third parties via entry points."""

from __future__ import annotations

import difflib
import importlib
from importlib.metadata import entry_points
from typing import Generic, TypeVar

from effbench.errors import EffbenchError, UnknownNameError

T = TypeVar("T")


def import_object(spec: str):
    """Import "package.module:Attr"; a clear error if it cannot be found."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise EffbenchError(f"{spec!r} is not of the form 'package.module:Name'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise EffbenchError(f"cannot import module {module_name!r} for {spec!r}: {error}") from error
    try:
        return getattr(module, attr)
    except AttributeError:
        raise EffbenchError(f"module {module_name!r} has no attribute {attr!r} (from {spec!r})") from None


class Registry(Generic[T]):
    """Names -> objects of one kind (explainer classes, metric classes, ...)."""

    def __init__(self, kind: str, entry_point_group: str | None = None):
        self.kind = kind
        self.entry_point_group = entry_point_group
        self._targets: dict[str, T | str] = {}
        self._builtin: set[str] = set()
        self._entry_points_loaded = False

    def register(self, name: str, target: T | str, *, builtin: bool = False) -> None:
        if name in self._targets:
            raise EffbenchError(f"{self.kind} name {name!r} is already registered; choose another name")
        self._targets[name] = target
        if builtin:
            self._builtin.add(name)

    def _load_entry_points(self) -> None:
        if self._entry_points_loaded or self.entry_point_group is None:
            return
        self._entry_points_loaded = True
        for point in entry_points(group=self.entry_point_group):
            if point.name in self._builtin:
                raise EffbenchError(
                    f"the entry point {point.value!r} registers {self.kind} {point.name!r}, "
                    f"which clashes with a built-in {self.kind}; rename it"
                )
            if point.name not in self._targets:
                self._targets[point.name] = point.value

    def names(self) -> list[str]:
        self._load_entry_points()
        return sorted(self._targets)

    def is_builtin(self, name: str) -> bool:
        return name in self._builtin

    def get(self, name: str) -> T:
        """The object registered under `name`, or "module:Attr" imported directly."""
        self._load_entry_points()
        if name not in self._targets:
            if ":" in name:
                return import_object(name)
            available = self.names()
            close = difflib.get_close_matches(name, available, n=3)
            hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}.{hint} Available: {', '.join(available)}"
                f" (or 'package.module:Class' for a third-party {self.kind})"
            )
        target = self._targets[name]
        if isinstance(target, str):
            target = import_object(target)
            self._targets[name] = target
        return target
