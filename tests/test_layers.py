"""The package's shape: imports flow down the layer table of ``pyproject.toml`` with no cycle, modules and
functions stay small, and importing a leaf does not import torch.

The checker reads the source with ``ast`` (imports inside functions count, ``TYPE_CHECKING`` blocks do not)
and first proves itself on a small synthetic package with an upward import and a cycle.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from conftest import REPO

PACKAGE = REPO / "vsekit"
TOOL = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["vsekit"]


# --------------------------------------------------------------------------- the checker


def module_names(root: Path) -> dict[str, Path]:
    """``{dotted name: file}`` for every ``.py`` file of the package at ``root`` (a folder named like it)."""
    out = {}
    for f in sorted(root.rglob("*.py")):
        parts = list(f.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = f
    return out


def _in_type_checking(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return True
    return False


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package modules that module ``name`` imports, anywhere in its body."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(tree):
        if _in_type_checking(node, parents):
            continue
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            # `from pkg import sub` imports the package too (its __init__ runs): an edge to both
            targets = [base] + [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in modules]
        else:
            continue
        for t in targets:
            while t and t not in modules:  # `import pkg.mod.attr` -> the longest module prefix
                t = t.rpartition(".")[0]
            if t and t != name:
                out.add(t)
    return out


def layer_of(name: str, layers: dict[str, int]) -> int | None:
    best = None
    for prefix in layers:
        if (name == prefix or name.startswith(prefix + ".")) and (best is None or len(prefix) > len(best)):
            best = prefix
    return layers[best] if best is not None else None


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def check_package(root: Path, layers: dict[str, int]) -> list[str]:
    """Every problem of the package at ``root``: unknown modules, upward imports, cycles."""
    modules = module_names(root)
    graph = {name: imports_of(name, path, modules) for name, path in modules.items()}
    problems = [f"{m}: not in the layer table" for m in modules if layer_of(m, layers) is None]
    for m, targets in sorted(graph.items()):
        lm = layer_of(m, layers)
        for t in sorted(targets):
            if m.startswith(t + "."):  # an ancestor package: Python runs it for every import of m anyway
                continue
            lt = layer_of(t, layers)
            if lm is not None and lt is not None and lt > lm:
                problems.append(f"{m} (layer {lm}) imports {t} (layer {lt}): an upward import")
    problems += [f"import cycle: {' -> '.join(c)}" for c in find_cycles(graph)]
    return problems


def size_problems(root: Path, limits: dict) -> list[str]:
    """Modules over ``module_lines``, functions over ``function_lines`` or ``positional_params``."""
    exceptions = limits.get("exceptions", {})
    out = []
    for name, path in module_names(root).items():
        text = path.read_text(encoding="utf-8")
        n = len(text.splitlines())
        if n > limits["module_lines"] and name not in exceptions:
            out.append(f"{name}: {n} lines (limit {limits['module_lines']})")
        for node in ast.walk(ast.parse(text)):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            where = f"{name}:{node.name} (line {node.lineno})"
            if f"{name}:{node.name}" in exceptions:
                continue
            length = node.end_lineno - node.lineno + 1
            if length > limits["function_lines"]:
                out.append(f"{where}: {length} lines (limit {limits['function_lines']})")
            params = [a.arg for a in node.args.posonlyargs + node.args.args if a.arg not in ("self", "cls")]
            if len(params) > limits["positional_params"]:
                out.append(f"{where}: {len(params)} positional parameters (limit {limits['positional_params']}; "
                           f"make the rest keyword-only or pass a context object)")
    return out


def missing_docstrings(root: Path) -> list[str]:
    """Public module-level functions and classes, and public methods of public classes, without a docstring."""
    out = []
    for name, path in module_names(root).items():
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if not isinstance(node, (ast.FunctionDef, ast.ClassDef)) or node.name.startswith("_"):
                continue
            members = node.body if isinstance(node, ast.ClassDef) else []
            for n in [node, *members]:  # (a nested class, e.g. a component's attrs Config, is documented by its owner)
                if (n is node or isinstance(n, ast.FunctionDef)) and not n.name.startswith("_") and \
                        not ast.get_docstring(n):
                    out.append(f"{name}:{n.name if n is node else node.name + '.' + n.name} (line {n.lineno})")
    return out


def private_uses(root: Path) -> list[str]:
    """Uses of another vsekit module's ``_private`` name: ``from vsekit.m import _x`` or ``alias._x``."""
    out = []
    for name, path in module_names(root).items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        aliases = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("vsekit"):
                for a in node.names:
                    if a.name.startswith("_") and not a.name.startswith("__"):
                        out.append(f"{name} (line {node.lineno}): from {node.module} import {a.name}")
                    aliases.add(a.asname or a.name)
            elif isinstance(node, ast.Import):
                aliases.update(a.asname or a.name.split(".")[0] for a in node.names if a.name.startswith("vsekit"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__") \
                    and isinstance(node.value, ast.Name) and node.value.id in aliases:
                out.append(f"{name} (line {node.lineno}): {node.value.id}.{node.attr}")
    return out


# --------------------------------------------------------------------------- the checker proves itself


def test_the_checker_finds_an_upward_import_and_a_cycle(tmp_path):
    pkg = tmp_path / "toy"
    (pkg / "low").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "low" / "__init__.py").write_text("")
    (pkg / "low" / "a.py").write_text("def f():\n    from toy.high import g\n")  # upward, inside a function
    (pkg / "low" / "b.py").write_text("from . import c\n")
    (pkg / "low" / "c.py").write_text("import toy.low.b\n")  # b -> c -> b
    (pkg / "high.py").write_text("from toy.low import c\nfrom typing import TYPE_CHECKING\n"
                                 "if TYPE_CHECKING:\n    from toy import odd\ndef g():\n    pass\n")
    (pkg / "odd.py").write_text("")
    problems = check_package(pkg, {"toy": 2, "toy.low": 0, "toy.high": 1})
    assert "toy.low.a (layer 0) imports toy.high (layer 1): an upward import" in problems
    assert "import cycle: toy.low.b -> toy.low.c" in problems
    assert not any("high (layer 1) imports" in p for p in problems)  # downward and TYPE_CHECKING are fine
    assert len(problems) == 2, problems
    (pkg / "big.py").write_text("def h(a, b, c, d, e, f, g, *, k=1):\n" + "    x = 1\n" * 70)
    sizes = size_problems(pkg, {"module_lines": 50, "function_lines": 60, "positional_params": 6})
    assert len(sizes) == 3, sizes
    assert sizes[0].startswith("toy.big: 71 lines (limit 50)")
    assert any(p.startswith("toy.big:h (line 1): 71 lines") for p in sizes)
    assert any(p.startswith("toy.big:h (line 1): 7 positional parameters") for p in sizes)


def test_the_checker_finds_missing_docstrings_and_private_uses(tmp_path):
    pkg = tmp_path / "vsekit"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text('def f():\n    "Doc."\n\ndef g():\n    pass\n\nclass C:\n    "Doc."\n'
                              '    def m(self):\n        pass\n    def _p(self):\n        pass\n\n'
                              'def _h():\n    pass\n')
    (pkg / "b.py").write_text("from vsekit.a import _h\nfrom vsekit import a\n\ndef k():\n    'Doc.'\n"
                              "    return a._h, a.__name__\n")
    assert missing_docstrings(pkg) == ["vsekit.a:g (line 4)", "vsekit.a:C.m (line 9)"]
    assert private_uses(pkg) == ["vsekit.b (line 1): from vsekit.a import _h", "vsekit.b (line 6): a._h"]


# --------------------------------------------------------------------------- the real package


def test_imports_flow_down_the_layers_without_cycles():
    problems = check_package(PACKAGE, TOOL["layers"])
    assert not problems, "\n".join(problems)


def test_modules_and_functions_stay_small():
    limits = TOOL["limits"]
    assert len(limits.get("exceptions", {})) <= 3, "at most three listed exceptions"
    problems = size_problems(PACKAGE, limits)
    assert not problems, "\n".join(problems)


def test_public_functions_and_classes_have_docstrings():
    missing = missing_docstrings(PACKAGE)
    assert not missing, "\n".join(missing)


def test_no_module_uses_another_modules_private_names():
    uses = private_uses(PACKAGE) + private_uses(REPO / "plugins")
    assert not uses, "\n".join(uses)


def test_contributing_shows_the_layer_table():
    text = (REPO / "CONTRIBUTING.md").read_text(encoding="utf-8")
    shown = dict(re.findall(r"^\| `(vsekit[\w.]*)` \| (\d) \|", text, flags=re.M))
    assert {k: int(v) for k, v in shown.items()} == TOOL["layers"]


@pytest.mark.parametrize("code", ["import vsekit.errors", "import vsekit.config", "import vsekit.io"])
def test_a_leaf_does_not_import_torch(code):
    out = subprocess.run([sys.executable, "-c", f"{code}; import sys; print('torch' in sys.modules)"],
                         capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"}, check=True)
    assert out.stdout.strip() == "False", out.stderr


def test_vsekit_help_does_not_import_torch():
    code = ("import sys\nfrom vsekit.cli import main\nsys.argv = ['vsekit', '--help']\ntry:\n    main()\n"
            "except SystemExit:\n    pass\nsys.stdout.write('TORCH=' + str('torch' in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().endswith("TORCH=False"), out.stdout[-300:] + out.stderr[-2000:]
