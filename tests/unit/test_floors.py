"""The floors (DESIGN.md, "Shape") hold: ``lint-imports`` keeps every contract in
``.importlinter``, the core contract names every core module, no module imports itself in a
circle, and no module path of ``workers``/``tasks`` is written as a string below the CLI."""

from __future__ import annotations

import ast
import configparser
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / ".importlinter"
PACKAGES = ("schemas", "genq", "producers", "workers", "tasks")
# The composition root, and `python -m genq`, its other door.
ABOVE_CORE = {"genq.cli", "genq.__main__"}
# A dotted path into workers/ or tasks/ ("tasks.generate", "workers.internals:Transport"), not a
# task name such as "genq.generate" or a word followed by a full stop.
MODULE_PATH = re.compile(r"(?<![\w.])(?:workers|tasks)(?:\.[A-Za-z_]\w*)+(?::\w+)?")


def _lint_imports(config: Path) -> subprocess.CompletedProcess[str]:
    code = (
        "import sys; from importlinter.cli import lint_imports; "
        f"sys.exit(lint_imports(config_filename={str(config)!r}, no_cache=True, no_logo=True))"
    )
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def _contracts() -> configparser.ConfigParser:
    parser = configparser.ConfigParser()
    parser.read(CONFIG)
    return parser


def _listed(section: str, key: str) -> set[str]:
    return set(_contracts()[section][key].split())


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph(*PACKAGES, cache_dir=None)


def test_lint_imports_keeps_every_contract() -> None:
    done = _lint_imports(CONFIG)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


def test_lint_imports_fails_on_a_broken_contract(tmp_path: Path) -> None:
    # The same runner, given an arrow that exists today: it must report it, or the test above
    # proves nothing.
    config = tmp_path / "broken.ini"
    config.write_text(
        "[importlinter]\nroot_packages =\n    genq\n    producers\n\n"
        "[importlinter:contract:wrong]\nname = producers never import genq (false)\n"
        "type = forbidden\nsource_modules =\n    producers\nforbidden_modules =\n    genq\n"
    )
    done = _lint_imports(config)
    assert done.returncode != 0
    assert "BROKEN" in done.stdout


def test_no_contract_ignores_an_import() -> None:
    contracts = _contracts()
    assert not [s for s in contracts.sections() if contracts.has_option(s, "ignore_imports")]


def test_the_core_contract_names_every_core_module(graph: grimp.ImportGraph) -> None:
    core = _listed("importlinter:contract:core", "source_modules")
    children = graph.find_children("genq")
    missing = sorted(children - ABOVE_CORE - core)
    assert not missing, f"add to the core contract in .importlinter: {missing}"
    assert core <= children, f"not modules of genq: {sorted(core - children)}"
    assert _listed("importlinter:contract:core", "forbidden_modules") == {
        "producers",
        "workers",
        "tasks",
        "genq.cli",
    }
    # genq/__init__.py is in no list: it must import nothing at all.
    assert not graph.find_modules_directly_imported_by("genq")


def test_only_the_store_imports_sqlalchemy(graph: grimp.ImportGraph) -> None:
    # Every top-level package and every module of genq but the store is a source of the
    # contract, so a new module cannot slip past it.
    sources = _listed("importlinter:contract:sqlalchemy", "source_modules")
    everything = (set(PACKAGES) - {"genq"}) | graph.find_children("genq")
    assert sources == everything - {"genq.store"}
    assert _listed("importlinter:contract:sqlalchemy", "forbidden_modules") == {
        "sqlalchemy",
        "alembic",
    }


def _cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(graph.modules):
        if start in index:
            continue
        work = [(start, iter(sorted(graph.find_modules_directly_imported_by(start))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            module, imported = work[-1]
            for other in imported:
                if other not in index:
                    index[other] = low[other] = len(index)
                    stack.append(other)
                    on_stack.add(other)
                    work.append(
                        (other, iter(sorted(graph.find_modules_directly_imported_by(other))))
                    )
                    break
                if other in on_stack:
                    low[module] = min(low[module], index[other])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[module])
                if low[module] == index[module]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == module:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def test_no_module_imports_itself_in_a_circle(graph: grimp.ImportGraph) -> None:
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    circle = grimp.ImportGraph()
    for name in ("a", "a.one", "a.two", "a.three"):
        circle.add_module(name)
    circle.add_import(importer="a.one", imported="a.two")
    circle.add_import(importer="a.two", imported="a.one")
    circle.add_import(importer="a.three", imported="a.one")
    assert _cycles(circle) == [["a.one", "a.two"]]


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the string constants that are docstrings (documentation may name modules)."""
    found = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            first = body[0] if body else None
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def module_paths_in_strings(source: str) -> Iterator[tuple[int, str]]:
    """(line, match) for each workers/tasks module path in a string that is not a docstring."""
    tree = ast.parse(source)
    skip = _docstrings(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
            for match in MODULE_PATH.finditer(node.value):
                yield node.lineno, match.group()


def _below_the_cli() -> Iterator[Path]:
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if (ROOT / "genq" / "cli") not in path.parents:
                yield path


def test_no_workers_or_tasks_module_path_is_a_string_below_the_cli() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{line}: {text}"
        for path in _below_the_cli()
        for line, text in module_paths_in_strings(path.read_text())
    ]
    assert not found, "module paths as strings (pass the object instead):\n" + "\n".join(found)


@pytest.mark.parametrize(
    ("source", "found"),
    [
        (
            'TRANSPORT = "workers.internals.transport:Transport"',
            ["workers.internals.transport:Transport"],
        ),
        ('include = ["tasks.generate", "tasks.webhooks"]', ["tasks.generate", "tasks.webhooks"]),
        ('x = f"see {n} in workers.context"', ["workers.context"]),
        ('TASK = "genq.generate"', []),
        ('QUEUE = "genq.tasks.x"', []),
        ('HELP = "run the tasks. Then stop the workers."', []),
        ('"""A docstring may name workers.context."""', []),
        ('def f() -> None:\n    """Nor is tasks.generate a string here."""', []),
    ],
)
def test_the_module_path_check_finds_what_it_should(source: str, found: list[str]) -> None:
    assert [text for _, text in module_paths_in_strings(source)] == found
