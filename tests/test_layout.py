"""The package's layout rules (docs/design.md), checked on the source text.

The data flows one way: atomic < audio < data < models < analysis < training
< evaluation < tuning < export < cli. A module may import its own package and
the packages before it, never one after it; functions stay short. The module
graph, imports inside functions included, has no cycle, and the package is
imported inside a function (outside the CLI) only where HIDDEN_IMPORTS_ALLOWED
says why.
"""

from __future__ import annotations

import ast
import fnmatch
import re
from pathlib import Path
from typing import NamedTuple

PACKAGE = Path(__file__).resolve().parents[1] / "keras_timbre"
LAYERS = (
    "atomic",
    "outputs",
    "_startup",
    "audio",
    "data",
    "models",
    "analysis",
    "vocoder",
    "training",
    "synthesis",
    "evaluation",
    "explorer",
    "tuning",
    "export",
    "cli",
)
MAX_FUNCTION_LINES = 60  # lines of code, docstring excluded


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if p.parent != PACKAGE or p.name != "__init__.py")


def _layer(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "keras_timbre" or len(parts) < 2:
        return None
    return parts[1]


def _imported_modules(tree: ast.AST) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "keras_timbre":
                found += [(node.lineno, f"keras_timbre.{alias.name}") for alias in node.names]
            else:
                found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
    return found


def _upward_imports(path: Path, package: Path = PACKAGE) -> list[str]:
    own = _layer("keras_timbre." + ".".join(path.relative_to(package).with_suffix("").parts))
    rank = {name: i for i, name in enumerate(LAYERS)}
    problems = []
    for line, module in _imported_modules(ast.parse(path.read_text())):
        target = _layer(module)
        if target in rank and own in rank and rank[target] > rank[own]:
            problems.append(f"{path.relative_to(package.parent)}:{line} imports {module} ({own} < {target})")
    return problems


def _docstring_lines(node: ast.AST) -> int:
    # Documentation is not length: a function's Args section grows with its options.
    first = node.body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
        return first.end_lineno - first.lineno + 1
    return 0


def _long_functions(path: Path, package: Path = PACKAGE) -> list[str]:
    problems = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            # argparse registration is a flat list of options: exempt, as the issue allows.
            if path.parent.name == "cli" and node.name == "register":
                continue
            length = node.end_lineno - node.lineno + 1 - _docstring_lines(node)
            if length > MAX_FUNCTION_LINES:
                problems.append(f"{path.relative_to(package.parent)}:{node.lineno} {node.name} has {length} lines")
    return problems


class PackageImport(NamedTuple):
    """One import of a package module by another: `source` and `target` are dotted module names."""

    source: str
    target: str
    where: str  # "keras_timbre/data/labels.py:351"
    in_function: bool


def _module_name(path: Path, package: Path) -> str:
    parts = (package.name, *path.relative_to(package).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


class _ImportFinder(ast.NodeVisitor):
    """Every import statement, module level or inside a function; `if TYPE_CHECKING:` bodies never run."""

    def __init__(self):
        self.found: list[tuple[int, str, list[str] | None, int, bool]] = []  # line, module, names, level, in function
        self._depth = 0

    def visit_If(self, node: ast.If):
        if not _is_type_checking(node.test):
            return self.generic_visit(node)
        for child in node.orelse:
            self.visit(child)

    def _visit_function(self, node: ast.AST):
        self._depth += 1
        self.generic_visit(node)
        self._depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _visit_function

    def visit_Import(self, node: ast.Import):
        self.found += [(node.lineno, alias.name, None, 0, self._depth > 0) for alias in node.names]

    def visit_ImportFrom(self, node: ast.ImportFrom):
        names = [alias.name for alias in node.names]
        self.found.append((node.lineno, node.module or "", names, node.level, self._depth > 0))


def package_imports(package: Path = PACKAGE) -> list[PackageImport]:
    """Every import of one of `package`'s modules by another, as the module it runs.

    `from pkg.sub import name` is an edge to the module `pkg.sub.name` when
    there is one, else to `pkg.sub` (a package's `__init__`); nothing is left
    out, not the package's `__init__` (it imports the models eagerly) nor
    `cli/`. Imports through `importlib` (the package's lazy `__getattr__`, the
    CLI's command table) are not statements and are not seen.
    """
    modules = {_module_name(path, package): path for path in sorted(package.rglob("*.py"))}
    imports = []
    for source, path in modules.items():
        finder = _ImportFinder()
        finder.visit(ast.parse(path.read_text()))
        for line, module, names, level, in_function in finder.found:
            if level:  # relative: from the module's package, `level - 1` packages up
                base = source.split(".")[: None if path.name == "__init__.py" else -1]
                module = ".".join(base[: len(base) - level + 1] + ([module] if module else []))
            if module != package.name and not module.startswith(package.name + "."):
                continue
            targets = (
                [module]
                if names is None
                else [f"{module}.{n}" if f"{module}.{n}" in modules else module for n in names]
            )
            for target in dict.fromkeys(targets):
                while target not in modules:  # `import pkg.sub.name` of a non-module: its module
                    target = target.rsplit(".", 1)[0]
                where = f"{path.relative_to(package.parent).as_posix()}:{line}"
                imports.append(PackageImport(source, target, where, in_function))
    return imports


def import_cycles(imports: list[PackageImport]) -> list[str]:
    """Every elementary cycle of the module graph, one line each: `a -> b (where) -> a (where)`."""
    graph: dict[str, dict[str, PackageImport]] = {}
    for edge in imports:
        if edge.source != edge.target:
            graph.setdefault(edge.source, {}).setdefault(edge.target, edge)
    cycles = []

    def walk(start: str, path: list[str]):
        for target in sorted(graph.get(path[-1], {})):
            if target == start:
                cycles.append(path[:])
            elif target > start and target not in path:  # each cycle once, from its smallest module
                walk(start, path + [target])

    for start in sorted(graph):
        walk(start, [start])

    def hop(a: str, b: str) -> str:
        edge = graph[a][b]
        return f"{b} ({edge.where}{', in a function' if edge.in_function else ''})"

    return [" -> ".join([cycle[0]] + [hop(a, b) for a, b in zip(cycle, cycle[1:] + cycle[:1])]) for cycle in cycles]


def hidden_imports(imports: list[PackageImport]) -> list[str]:
    """`where target` of each in-function import of the package outside `cli/` (lazy there on purpose)."""
    return [
        f"{edge.where} {edge.target}" for edge in imports if edge.in_function and edge.source.split(".")[1:2] != ["cli"]
    ]


# In-function imports of the package outside cli/, each for start-up time: (module, imported module): why.
# Third-party imports (tensorflow, librosa, sklearn, ...) inside functions are not listed: only the package's.
HIDDEN_IMPORTS_ALLOWED = {
    # matplotlib (~0.7 s) loads only when ReconstructionFigures draws: `keras_timbre.BetaWarmup` and
    # `NaNGuard` (public, for a user's own fit) come from the same module and need none of it.
    ("keras_timbre.training.callbacks", "keras_timbre.analysis.plots"),
}


def test_the_module_graph_has_no_cycles():
    cycles = import_cycles(package_imports())
    for cycle in cycles:
        print("import cycle:", cycle)
    assert cycles == []


def test_the_package_is_imported_inside_functions_only_where_allowed():
    allowed = {f"{source} {target}" for source, target in HIDDEN_IMPORTS_ALLOWED}
    imports = [edge for edge in package_imports() if f"{edge.source} {edge.target}" not in allowed]
    hidden = hidden_imports(imports)
    for line in hidden:
        print("in-function import:", line)
    assert hidden == []
    used = {f"{edge.source} {edge.target}" for edge in package_imports() if edge.in_function}
    assert sorted(allowed - used) == [], "allowed but no longer there: drop them from HIDDEN_IMPORTS_ALLOWED"


def test_the_graph_checks_catch_a_cycle_hidden_in_a_function(tmp_path):
    # A test of the tests: a -> b at the top, b -> a inside a function, is a cycle; a TYPE_CHECKING
    # import is not an edge, and `from pkg import b` is an edge to the module pkg.b, not to pkg.
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("VERSION = 1\n")
    (package / "a.py").write_text("from pkg import b, VERSION\nfrom pkg import c\n")
    (package / "b.py").write_text("import os\n\n\ndef f():\n    import json\n    from pkg.a import x\n")
    (package / "c.py").write_text("from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n    from pkg import a\n")
    (package / "d.py").write_text("from . import c\n\n\nclass D:\n    def m(self):\n        from .c import y\n")
    imports = package_imports(package)
    assert sorted((edge.source, edge.target) for edge in imports) == [
        ("pkg.a", "pkg"),
        ("pkg.a", "pkg.b"),
        ("pkg.a", "pkg.c"),
        ("pkg.b", "pkg.a"),
        ("pkg.d", "pkg.c"),
        ("pkg.d", "pkg.c"),
    ]
    assert import_cycles(imports) == ["pkg.a -> pkg.b (pkg/a.py:1) -> pkg.a (pkg/b.py:6, in a function)"]
    assert hidden_imports(imports) == ["pkg/b.py:6 pkg.a", "pkg/d.py:6 pkg.c"]
    (package / "b.py").write_text("import os\n")
    assert import_cycles(package_imports(package)) == []


def test_no_module_imports_a_later_layer():
    problems = [problem for path in _modules() for problem in _upward_imports(path)]
    assert problems == []


def test_no_function_is_longer_than_sixty_lines():
    problems = [problem for path in _modules() for problem in _long_functions(path)]
    assert problems == []


def test_every_package_is_a_known_layer():
    packages = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    modules = {p.stem for p in PACKAGE.glob("*.py") if p.name != "__init__.py"}
    assert packages | modules <= set(LAYERS)


def test_the_checks_catch_a_violation(tmp_path):
    # A test of the tests: an upward import and a long function are both reported.
    fake = tmp_path / "keras_timbre" / "audio"
    fake.mkdir(parents=True)
    module = fake / "bad.py"
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    module.write_text(f"from keras_timbre.training import run\n\n\ndef long():\n{body}\n")
    assert _upward_imports(module, tmp_path / "keras_timbre") == [
        "keras_timbre/audio/bad.py:1 imports keras_timbre.training (audio < training)"
    ]
    assert [problem.split(" ", 1)[1] for problem in _long_functions(module, tmp_path / "keras_timbre")] == [
        f"long has {MAX_FUNCTION_LINES + 1} lines"
    ]


def documented_modules(design: str) -> list[str]:
    """The module patterns of design.md's modules table: `a/b.py`, `c.py` (the folder of the one before) or `d/`."""
    patterns = []
    for line in design.splitlines():
        cells = line.split("|")
        if not line.startswith("| `") or len(cells) < 3:
            continue
        folder = ""
        for name in re.findall(r"`([^`]+)`", cells[1]):
            folder = name.rsplit("/", 1)[0] + "/" if "/" in name else folder
            patterns.append(name + "*.py" if name.endswith("/") else name if "/" in name else folder + name)
    return patterns


def undocumented_modules(package: Path, design: str) -> list[str]:
    patterns = documented_modules(design)
    modules = [p.relative_to(package).as_posix() for p in package.rglob("*.py") if p.name != "__init__.py"]
    return sorted(m for m in modules if not any(fnmatch.fnmatch(m, pattern) for pattern in patterns))


def test_every_module_has_its_line_in_the_design_doc():
    design = (PACKAGE.parent / "docs" / "design.md").read_text()
    assert undocumented_modules(PACKAGE, design) == []
    modules = [p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py")]
    stale = [pattern for pattern in documented_modules(design) if not fnmatch.filter(modules, pattern)]
    assert stale == []


def test_the_design_doc_check_catches_a_missing_module(tmp_path):
    for name in ("audio/io.py", "audio/new.py", "tuning/a.py", "tuning/b.py", "cli/x.py"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("")
    design = "| `audio/io.py` | reading |\n| `tuning/a.py`, `b.py` | two |\n| `cli/` | commands |\n"
    assert undocumented_modules(tmp_path, design) == ["audio/new.py"]
