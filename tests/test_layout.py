"""The package's layout rules (docs/design.md), checked on the source text.

The data flows one way: atomic < audio < data < models < analysis < training
< evaluation < tuning < export < cli. A module may import its own package and
the packages before it, never one after it; functions stay short.
"""

from __future__ import annotations

import ast
import fnmatch
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "keras_timbre"
LAYERS = (
    "atomic",
    "outputs",
    "_startup",
    "audio",
    "data",
    "models",
    "analysis",
    "training",
    "evaluation",
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
