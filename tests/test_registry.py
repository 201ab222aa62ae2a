import pytest

from benchmark.core import registry as registry_module
from benchmark.core.errors import UnknownNameError, UserError
from benchmark.core.registry import Registry


class _EP:
    def __init__(self, name, value, obj=None, error=None):
        self.name, self.value, self._obj, self._error = name, value, obj, error

    def load(self):
        if self._error:
            raise self._error
        return self._obj


def test_register_get_and_name_attribute():
    reg = Registry("widget", None, None)

    @reg.register("a")
    class A:
        pass

    assert reg.get("a") is A and A.name == "a" and reg.names() == ["a"] and "a" in reg


def test_duplicate_name_raises():
    reg = Registry("widget", None, None)
    reg.register("a")(type("A", (), {}))
    with pytest.raises(ValueError, match="duplicate widget name 'a'"):
        reg.register("a")(type("B", (), {}))


def test_unknown_name_lists_known_and_is_a_user_error():
    reg = Registry("widget", None, None)
    reg.register("alpha")(type("A", (), {}))
    reg.register("beta")(type("B", (), {}))
    with pytest.raises(UnknownNameError) as info:
        reg.get("gamma")
    assert isinstance(info.value, UserError)
    assert str(info.value) == "unknown widget 'gamma'; known widgets: alpha, beta"


def test_bad_names_rejected():
    reg = Registry("widget", None, None)
    for bad in ("", " a", 3):
        with pytest.raises(ValueError):
            reg.register(bad)


def test_entry_points_register_and_broken_ones_are_reported(monkeypatch):
    class Plugin:
        pass

    eps = [_EP("third", "pkg.mod:Plugin", Plugin), _EP("bad", "pkg.mod:Missing", error=ImportError("no module pkg"))]
    monkeypatch.setattr(registry_module, "entry_points", lambda group: eps if group == "partbench.widgets" else [])
    reg = Registry("widget", None, "partbench.widgets")
    assert reg.names() == ["third"] and reg.get("third") is Plugin and Plugin.name == "third"
    assert "no module pkg" in reg.broken["bad"]
    with pytest.raises(UnknownNameError, match="failed to load"):
        reg.get("bad")


def test_builtin_registries_have_the_builtins():
    from benchmark.core.registry import METHODS

    assert "random" in METHODS
