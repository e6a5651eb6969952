"""The layering rules of DESIGN.md and docs/architecture.md, checked from the code.

Every module under ``src/imapgate`` is parsed (never imported) and every import
statement in it counts: top level, inside functions and classes, under
``if TYPE_CHECKING:`` (a type-only import is still a dependency between layers),
relative ones resolved against the module's package, and ``importlib.import_module``
/ ``__import__`` calls with a literal name.  Text in docstrings or comments does not.

A failing rule prints every offending import as ``module:line imports target``.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
ROOT_PACKAGE = "imapgate"

#: Low-level I/O that the state layers (replica, team) must not touch: sessions and
#: sockets belong to server/, upstream/ and submission/.
SOCKET_MODULES = ("socket", "ssl", "selectors", "asyncio.streams")
#: The asyncio names that open or serve byte streams (the rest of asyncio — locks,
#: tasks — is a separate question the rules do not decide).
ASYNCIO_STREAM_NAMES = frozenset(
    {
        "open_connection",
        "start_server",
        "open_unix_connection",
        "start_unix_server",
        "StreamReader",
        "StreamWriter",
        "StreamReaderProtocol",
    }
)


@dataclass(frozen=True)
class Import:
    module: str  # the importing module, dotted
    target: str  # what it imports, dotted (a module, or a name inside one)
    line: int

    def __str__(self) -> str:
        return f"{self.module}:{self.line} imports {self.target}"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def known_modules() -> frozenset[str]:
    return frozenset(module_name(p) for p in SRC.joinpath(ROOT_PACKAGE).rglob("*.py"))


def _resolve(module: str, is_package: bool, level: int, name: str | None) -> str:
    """The absolute name of ``from <level dots><name> import ...`` inside ``module``."""
    if level == 0:
        return name or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    if level > 1:
        base = base[: -(level - 1)]
    return ".".join([*base, name] if name else base)


class _Collector(ast.NodeVisitor):
    def __init__(self, module: str, is_package: bool) -> None:
        self.module = module
        self.is_package = is_package
        self.found: list[Import] = []
        #: Local names bound to the asyncio module (``import asyncio``, ``as aio``).
        self.asyncio_aliases: set[str] = set()

    def add(self, target: str, node: ast.AST) -> None:
        self.found.append(Import(self.module, target, getattr(node, "lineno", 0)))

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self.add(alias.name, node)
            if alias.name == "asyncio":
                self.asyncio_aliases.add(alias.asname or "asyncio")

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = _resolve(self.module, self.is_package, node.level, node.module)
        for alias in node.names:
            sub = f"{base}.{alias.name}" if base else alias.name
            # ``from . import replica`` imports a module; ``from .x import Y`` a name.
            if sub in known_modules() or base == "asyncio":
                self.add(sub, node)
            else:
                self.add(base, node)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        # ``asyncio.open_connection(...)`` uses streams without importing asyncio.streams.
        if (
            isinstance(node.value, ast.Name)
            and node.value.id in self.asyncio_aliases
            and node.attr in ASYNCIO_STREAM_NAMES
        ):
            self.add(f"asyncio.{node.attr}", node)
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
        if name in ("import_module", "__import__") and node.args:
            first = node.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                level = len(first.value) - len(first.value.lstrip("."))
                self.add(_resolve(self.module, self.is_package, level, first.value.lstrip(".") or None), node)
        self.generic_visit(node)


@cache
def imports_of_all() -> tuple[Import, ...]:
    found: list[Import] = []
    for path in sorted(SRC.joinpath(ROOT_PACKAGE).rglob("*.py")):
        collector = _Collector(module_name(path), path.name == "__init__.py")
        collector.visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
        found.extend(collector.found)
    return tuple(found)


def within(name: str, *packages: str) -> bool:
    """Whether ``name`` is one of ``packages`` (dotted, relative to imapgate) or inside one."""
    return any(
        name == full or name.startswith(full + ".")
        for full in (f"{ROOT_PACKAGE}.{p}" if p else ROOT_PACKAGE for p in packages)
    )


def is_socket_module(target: str) -> bool:
    return any(target == s or target.startswith(s + ".") for s in SOCKET_MODULES)


def is_asyncio_stream(target: str) -> bool:
    return target == "asyncio.streams" or (
        target.startswith("asyncio.") and target.split(".", 1)[1] in ASYNCIO_STREAM_NAMES
    )


@dataclass(frozen=True)
class Rule:
    id: str
    text: str
    #: Which importing modules the rule is about.
    applies: Callable[[str], bool]
    #: True when the import breaks the rule.
    forbidden: Callable[[str], bool]

    def violations(self) -> Iterator[Import]:
        return (i for i in imports_of_all() if self.applies(i.module) and self.forbidden(i.target))


#: The service layer as the CLI may see it: the gateway's services (gateway/: the
#: pipeline, its operations, the admin service, the control socket), the config, the
#: operator errors and logging, the checks of ``imapgate check``, the process runner
#: (``serve``/``sync``, the composition root) and the demo (``imapgate demo``).
CLI_ALLOWED = ("gateway", "config", "errors", "logs", "checks", "runner", "demo")


def is_cli(module: str) -> bool:
    """The command line: ``imapgate.cli`` and its parts (``cli_common``, ``cli_acl``, ...)."""
    return module == "imapgate.cli" or module.startswith("imapgate.cli_")

RULES = [
    Rule(
        "protocol-pure",
        "protocol/ imports nothing of imapgate (but itself) and no asyncio",
        lambda m: within(m, "protocol"),
        lambda t: (within(t, "") and not within(t, "protocol")) or t == "asyncio" or t.startswith("asyncio."),
    ),
    Rule(
        "cli-service-only",
        f"cli imports only the service layer ({', '.join(CLI_ALLOWED)}), its own parts and the package root",
        is_cli,
        lambda t: within(t, "") and t != ROOT_PACKAGE and not within(t, *CLI_ALLOWED) and not is_cli(t),
    ),
    Rule(
        "cli-no-state",
        "cli never imports imapgate.store, imapgate.team or imapgate.replica",
        is_cli,
        lambda t: within(t, "store", "team", "replica"),
    ),
    Rule(
        "server-no-store-upstream",
        "server/ never imports imapgate.store or imapgate.upstream",
        lambda m: within(m, "server"),
        lambda t: within(t, "store", "upstream"),
    ),
    Rule(
        "state-knows-no-sessions",
        "replica/ and team/ import nothing of server, upstream, sync, web, submission",
        lambda m: within(m, "replica", "team"),
        lambda t: within(t, "server", "upstream", "sync", "web", "submission"),
    ),
    Rule(
        "state-knows-no-sockets",
        "replica/ and team/ use no socket, ssl, selectors or asyncio streams",
        lambda m: within(m, "replica", "team"),
        lambda t: is_socket_module(t) or is_asyncio_stream(t),
    ),
    Rule(
        "web-no-state",
        "web/ never imports imapgate.store, imapgate.team or imapgate.replica",
        lambda m: within(m, "web"),
        lambda t: within(t, "store", "team", "replica"),
    ),
]


def _case(rule: Rule) -> object:
    return pytest.param(rule, id=rule.id)


@pytest.mark.parametrize("rule", [_case(r) for r in RULES])
def test_import_rule(rule: Rule) -> None:
    bad = sorted(set(rule.violations()), key=lambda i: (i.module, i.line, i.target))
    report = "\n".join(f"  {i}" for i in bad)
    assert not bad, f"rule broken: {rule.text}\n{report}"


# -- the checker itself ---------------------------------------------------------------


def test_every_module_is_read_and_imports_are_found() -> None:
    modules = {i.module for i in imports_of_all()}
    assert {"imapgate.cli", "imapgate.protocol.command_parser", "imapgate.gateway.app"} <= modules
    assert len(known_modules()) > 50


def test_relative_and_function_level_imports_resolve() -> None:
    source = (
        "from . import sibling\n"
        "from ..store import engine\n"
        "from ..team.users import UserDirectory\n"
        "def f():\n"
        "    import socket\n"
        "    from .. import config\n"
        "    import importlib; importlib.import_module('imapgate.upstream.pool')\n"
        "import asyncio\n"
        "x = asyncio.open_connection\n"
        '"""from imapgate import web  (text, not an import)"""\n'
    )
    collector = _Collector("imapgate.replica.mod", is_package=False)
    collector.visit(ast.parse(source))
    assert [(i.target, i.line) for i in collector.found] == [
        ("imapgate.replica", 1),  # not a known module: the package itself
        ("imapgate.store.engine", 2),
        ("imapgate.team.users", 3),
        ("socket", 5),
        ("imapgate.config", 6),
        ("importlib", 7),
        ("imapgate.upstream.pool", 7),
        ("asyncio", 8),
        ("asyncio.open_connection", 9),
    ]
    rules = {r.id: r for r in RULES}
    assert rules["state-knows-no-sockets"].forbidden("asyncio.open_connection")
    assert not rules["state-knows-no-sockets"].forbidden("asyncio")
    assert rules["cli-no-state"].forbidden("imapgate.store.engine")
    assert not rules["cli-service-only"].forbidden("imapgate.gateway.admin")
    assert rules["protocol-pure"].forbidden("asyncio")
    assert not rules["protocol-pure"].forbidden("imapgate.protocol.grammar")
