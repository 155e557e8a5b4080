"""Reading what strangers wrote: bounded excerpts of values for messages, and the YAML loader for cards and boards."""

from __future__ import annotations

import reprlib
from pathlib import Path
from typing import Any

import yaml

from effbench.errors import CardError

EXCERPT_CHARACTERS = 80
MAX_YAML_BYTES = 1_000_000  # a task card or board spec is a few kilobytes

_bounded = reprlib.Repr()
_bounded.maxlevel = 3
_bounded.maxlist = _bounded.maxtuple = _bounded.maxset = _bounded.maxdict = 6
_bounded.maxstring = _bounded.maxother = EXCERPT_CHARACTERS


def excerpt(value: Any) -> str:
    """A value as error messages show it: its repr, cut to EXCERPT_CHARACTERS (then with its type), however big it is."""
    shown = _bounded.repr(value)
    if len(shown) > EXCERPT_CHARACTERS:
        return f"{shown[:EXCERPT_CHARACTERS]}... (a {type(value).__name__}, cut)"
    return shown


class _FlatLoader(yaml.SafeLoader):
    """SafeLoader without anchors and aliases: an alias repeats a value, and nested ones blow up exponentially."""

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise yaml.composer.ComposerError(None, None, "YAML anchors and aliases (& and *) are not allowed",
                                              event.start_mark)
        return super().compose_node(parent, index)


def load_yaml_file(path: Path, what: str) -> tuple[Any, bytes]:
    """Parse a card or board file: at most MAX_YAML_BYTES of UTF-8 YAML, safe tags only, no anchors or aliases.

    Returns the parsed value and the file's bytes. `what` names the file in messages ("task card",
    "board spec"). Every problem is a one-line CardError.
    """
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_YAML_BYTES + 1)
    except OSError as error:
        raise CardError(f"cannot read {what} {path}: {error.strerror or error}") from None
    if len(raw) > MAX_YAML_BYTES:
        raise CardError(f"{path}: a {what} may hold at most {MAX_YAML_BYTES:,} bytes; this one is larger")
    try:
        return yaml.load(raw.decode("utf-8"), Loader=_FlatLoader), raw  # noqa: S506 (a SafeLoader)
    except UnicodeDecodeError as error:
        raise CardError(f"{path}: not valid UTF-8 YAML: invalid UTF-8 at byte {error.start}") from None
    except yaml.YAMLError as error:
        problem = " ".join(str(error).split())
        raise CardError(f"{path}: not valid UTF-8 YAML for a {what}: {problem[:300]}") from None
