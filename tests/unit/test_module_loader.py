"""The module loader lists loadable modules only: helpers named ``_*`` stay out of the list."""

from __future__ import annotations

from salon.core.hosts import available_modules, module_class


def test_every_listed_module_loads() -> None:
    names = available_modules()
    assert "presence" in names
    for name in names:
        assert module_class(name).name == name


def test_helpers_are_not_listed() -> None:
    assert not [name for name in available_modules() if name.startswith("_")]
    assert "subscription" not in available_modules()
