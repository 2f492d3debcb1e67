"""The shape of the house (ARCHITECTURE.md): imports run one way, MLflow's query language stays in
tracking.py, modules stay small, and a CLI with nothing to train answers without torch."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "selfregress"
# Modules above 300 lines, and why (ARCHITECTURE.md says the same).
LONG_MODULES = {
    "tracking.py": "the one seam to MLflow: every run, metric, checkpoint and query of the project",
    "tasks/loaders.py": "the task sources' loaders (APPS, MBPP, HumanEval, ...), owned by the tasks package",
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """module -> the project modules it imports anywhere in its body (lazy and TYPE_CHECKING imports too)."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                deps.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                deps.add(base)
                deps.update(f"{base}.{a.name}" for a in node.names)
        # The package itself ("from selfregress import x") is not an edge: its __init__ imports nothing.
        graph[name] = {d for d in deps if d in modules and d != name and d != "selfregress"}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle (as a path that returns to its start), or None. Depth-first, three colours."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                return stack[stack.index(dep):] + [dep]
            if dep not in state and (cycle := visit(dep)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_the_project_imports_form_no_cycle():
    graph = import_graph()
    assert graph["selfregress.sampling"] >= {"selfregress.policy"}   # the graph sees real edges
    assert "selfregress.sampling" not in graph["selfregress.policy"]
    assert find_cycle(graph) is None


# A filter clause: tags.x / params.x / attributes.x / metrics.x followed by a comparison.
FILTER = re.compile(r"\b(tags|params|attributes|metrics)\.\S*?\s*(!=|=|<|>|\bLIKE\b|\bILIKE\b|\bIN\b)")


def filter_strings(path: Path) -> list[tuple[int, str]]:
    """(line, source) of every string literal (f-strings included) that reads as an MLflow filter.
    The help texts of config fields (``option(...)``) are documentation, and are skipped."""
    source = path.read_text()
    tree = ast.parse(source)
    skipped = {id(arg) for node in ast.walk(tree)
               if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "option" for arg in node.args}
    skipped |= {id(part) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr) for part in node.values}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Constant, ast.JoinedStr)) and id(node) not in skipped:
            text = ast.get_source_segment(source, node) or ""
            if isinstance(node, ast.JoinedStr) or isinstance(node.value, str):
                if FILTER.search(text):
                    found.append((node.lineno, text))
    return found


def test_the_filter_check_sees_a_filter(tmp_path):
    sample = tmp_path / "x.py"
    sample.write_text("q = f\"tags.chain_id = '{c}' and \" \"attributes.status != 'FINISHED'\"\n"
                      "col = row[f\"tags.{key}\"]\n")
    assert [line for line, _ in filter_strings(sample)] == [1]


def test_only_tracking_builds_mlflow_filter_strings():
    offenders = {str(p.relative_to(PACKAGE)): filter_strings(p) for p in PACKAGE.rglob("*.py")
                 if p.name != "tracking.py"}
    assert {k: v for k, v in offenders.items() if v} == {}
    assert filter_strings(PACKAGE / "tracking.py"), "tracking.py holds the queries"


def test_no_module_above_300_lines_but_the_explained_ones():
    long = {str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py") if len(p.read_text().splitlines()) > 300}
    assert long <= set(LONG_MODULES), long - set(LONG_MODULES)
    architecture = (ROOT / "ARCHITECTURE.md").read_text()
    for name in long:
        assert name in architecture, f"{name} is above 300 lines: ARCHITECTURE.md must say why"


PROBE = ("import runpy, sys\n"
         "sys.argv = ['selfregress'] + sys.argv[1:]\n"
         "try:\n    runpy.run_module('selfregress', run_name='__main__')\n"
         "except SystemExit as e:\n    code = e.code\n"
         "else:\n    code = 0\n"
         "print('IMPORTED', *(name in sys.modules for name in ('torch', 'transformers', 'mlflow', 'scipy')))\n"
         "sys.exit(code)\n")


@pytest.mark.parametrize("argv, code, says", [
    (["report", "--help"], 0, "--baseline"),
    (["promote", "--help"], 0, "--top_k"),
    (["main", "--condition", "bogus"], 2, "error: 'condition' must be one of naive, kl"),
])
def test_a_cli_with_nothing_to_train_or_read_imports_neither_torch_nor_mlflow(argv, code, says, tmp_path):
    result = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, timeout=120,
                            cwd=tmp_path, env={**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/m.db"})
    assert result.returncode == code, result.stderr
    assert says in result.stdout + result.stderr
    assert "IMPORTED False False False False" in result.stdout   # torch, transformers, mlflow, scipy
