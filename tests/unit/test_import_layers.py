"""The import contract of STYLE.md 6.1, checked by walking every module's ``ast``.

Every import counts, wherever it is: module level, inside functions, and under
``if TYPE_CHECKING:`` (a type-only import still ties one layer to another).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

SALON = Path(__file__).resolve().parents[2] / "salon"
PURE = ("salon.xml", "salon.stream", "salon.auth", "salon.jid")


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    applies_to: tuple[str, ...]
    forbidden: tuple[str, ...]
    allowed: tuple[str, ...] = ()

    def breaks(self, importer: str, imported: str) -> bool:
        return (
            _within(importer, self.applies_to)
            and _within(imported, self.forbidden)
            and not _within(imported, self.allowed)
        )


RULES = (
    Rule(
        "xml, stream, auth and jid are pure: no IO, no core, no storage backend",
        PURE,
        ("asyncio", "socket", "ssl", "salon.net", "salon.core", "salon.storage"),
        allowed=("salon.storage.interfaces",),  # the domain dataclasses only
    ),
    Rule(
        "modules never import the network layer or the composition root",
        ("salon.modules",),
        ("salon.net", "salon.app"),
    ),
    Rule(
        "core never imports the network layer or the composition root (it states what it "
        "needs from them as Protocols in salon.core.ports)",
        ("salon.core",),
        ("salon.net", "salon.app", "ssl", "socket"),
    ),
    Rule(
        "storage never imports modules or core",
        ("salon.storage",),
        ("salon.modules", "salon.core"),
    ),
)


def _within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _module_name(path: Path) -> str:
    parts = path.relative_to(SALON.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_salon_module(name: str) -> bool:
    path = SALON.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def imported_names(module: str, source: str, *, is_package: bool = False) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in ``source``.

    ``from pkg import name`` yields ``pkg.name`` when that is a module of Salon, else ``pkg``.
    """
    package = module if is_package else module.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                anchor = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{anchor}.{base}" if base else anchor
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                is_submodule = base.startswith("salon") and _is_salon_module(candidate)
                found.append((node.lineno, candidate if is_submodule else base))
    return found


def violations_in(module: str, source: str, *, is_package: bool = False) -> list[str]:
    return [
        f"{module} line {line}: imports {imported} (rule: {rule.name})"
        for line, imported in imported_names(module, source, is_package=is_package)
        for rule in RULES
        if rule.breaks(module, imported)
    ]


def _salon_files() -> list[Path]:
    return sorted(SALON.rglob("*.py"))


def test_every_salon_module_keeps_the_import_contract() -> None:
    problems: list[str] = []
    for path in _salon_files():
        source = path.read_text(encoding="utf-8")
        found = violations_in(_module_name(path), source, is_package=path.name == "__init__.py")
        problems.extend(f"{path.relative_to(SALON.parent)}: {v}" for v in found)
    for problem in problems:
        print(problem)
    assert not problems, "import contract broken:\n" + "\n".join(problems)


def test_the_walk_sees_the_pure_layers() -> None:
    names = {_module_name(p) for p in _salon_files()}
    for required in ("salon.jid", "salon.stream.c2s", "salon.xml.parser", "salon.auth.sasl"):
        assert required in names


# ------------------------------------------------------------------ the checker itself
@pytest.mark.parametrize(
    ("module", "source", "expected"),
    [
        ("salon.xml.element", "import asyncio", ["asyncio"]),
        ("salon.core.server", "from salon.net.s2s import S2SManager", ["salon.net.s2s"]),
        ("salon.core.router", "from salon.app import App", ["salon.app"]),
        ("salon.jid", "import asyncio.events", ["asyncio.events"]),
        ("salon.stream.c2s", "from ssl import SSLContext", ["ssl"]),
        ("salon.auth.sasl", "def f():\n    import socket", ["socket"]),
        ("salon.stream.c2s", "from salon.core import hooks", ["salon.core.hooks"]),
        ("salon.stream.c2s", "from ..core.hooks import HookBus", ["salon.core.hooks"]),
        ("salon.stream.c2s", "from salon.storage.sql import SqlStorage", ["salon.storage.sql"]),
        ("salon.stream.c2s", "from salon.storage import open_storage", ["salon.storage"]),
        (
            "salon.stream.c2s",
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import salon.net.c2s",
            ["salon.net.c2s"],
        ),
        ("salon.modules.ping", "from salon.net.tls import TlsContexts", ["salon.net.tls"]),
        ("salon.storage.sql.kv", "from salon.core.hooks import HookBus", ["salon.core.hooks"]),
        ("salon.storage.sql.kv", "from salon.modules import ping", ["salon.modules.ping"]),
    ],
)
def test_checker_reports_forbidden_imports(module: str, source: str, expected: list[str]) -> None:
    found = violations_in(module, source)
    assert [v.split("imports ")[1].split(" ")[0] for v in found] == expected


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("salon.stream.c2s", "from salon.storage.interfaces import Account"),
        ("salon.stream.c2s", "from salon.xml.parser import XmlStreamParser"),
        ("salon.auth.sasl", "import hashlib, hmac"),
        ("salon.xml.element", "from . import serializer"),
        ("salon.modules.ping", "import asyncio\nfrom salon.core.module import Module"),
        ("salon.app", "import asyncio\nfrom salon.net.c2s import C2SConnection"),
        ("salon.storage.sql.kv", "import asyncio\nfrom salon.storage.interfaces import Account"),
    ],
)
def test_checker_accepts_allowed_imports(module: str, source: str) -> None:
    assert violations_in(module, source) == []


def test_relative_imports_resolve_from_packages_and_modules() -> None:
    assert imported_names("salon.stream", "from . import c2s", is_package=True) == [
        (1, "salon.stream.c2s")
    ]
    assert imported_names("salon.stream.c2s", "from ..xml import parser") == [
        (1, "salon.xml.parser")
    ]
