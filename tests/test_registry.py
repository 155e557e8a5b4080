import pytest

from effbench.errors import EffbenchError, UnknownNameError
from effbench.registry import Registry


def test_unknown_name_suggests_close_names_and_lists_all():
    registry = Registry("widget")
    registry.register("necessity", "json:dumps", builtin=True)
    registry.register("sufficiency", "json:loads", builtin=True)
    with pytest.raises(UnknownNameError) as error:
        registry.get("necesity")
    message = str(error.value)
    assert "did you mean 'necessity'" in message.lower()
    assert "necessity, sufficiency" in message


def test_lazy_targets_resolve_on_first_use():
    import json

    registry = Registry("widget")
    registry.register("dumps", "json:dumps")
    assert registry.get("dumps") is json.dumps


def test_module_colon_name_imports_directly_and_bad_specs_are_clear():
    import json

    registry = Registry("widget")
    assert registry.get("json:loads") is json.loads
    with pytest.raises(EffbenchError, match="has no attribute 'nope'"):
        registry.get("json:nope")
    with pytest.raises(EffbenchError, match="cannot import module"):
        registry.get("no_such_module_xyz:Thing")


def test_duplicate_registration_is_an_error():
    registry = Registry("widget")
    registry.register("a", "json:dumps")
    with pytest.raises(EffbenchError, match="already registered"):
        registry.register("a", "json:loads")


def test_entry_point_clashing_with_builtin_is_an_error(monkeypatch):
    from importlib.metadata import EntryPoint

    import effbench.registry as registry_module

    clash = EntryPoint(name="builtin_one", value="json:loads", group="effbench.widgets")
    extra = EntryPoint(name="third_party", value="json:dumps", group="effbench.widgets")
    monkeypatch.setattr(registry_module, "entry_points", lambda group: [extra])
    registry = Registry("widget", entry_point_group="effbench.widgets")
    registry.register("builtin_one", "json:dumps", builtin=True)
    assert "third_party" in registry.names()

    monkeypatch.setattr(registry_module, "entry_points", lambda group: [clash])
    registry = Registry("widget", entry_point_group="effbench.widgets")
    registry.register("builtin_one", "json:dumps", builtin=True)
    with pytest.raises(EffbenchError, match="clashes with a built-in"):
        registry.names()
