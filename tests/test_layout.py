"""The package's import graph points one way: the application (experiments, cli) on top of
training, training on top of the layers, and the diagnostics beside the layers."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "cuda_rnn"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    """Module -> the package modules it imports, at module level or inside functions."""
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        found = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                base = package[: len(package) - node.level + 1] if node.level else []
                target = base + (node.module.split(".") if node.module else [])
                candidates = [".".join(target + [a.name]) for a in node.names]
                if node.module:
                    candidates.append(".".join(target))
            elif isinstance(node, ast.Import):
                candidates = [a.name for a in node.names]
            else:
                continue
            found.update(c for c in candidates if c in files and c != name)
        graph[name] = found
    return graph


def _reach(graph: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        for dep in graph[todo.pop()] - seen:
            seen.add(dep)
            todo.append(dep)
    return seen


@pytest.mark.parametrize("module", ["cuda_rnn.diagnostics", "cuda_rnn.vanishing"])
def test_diagnostics_stand_on_the_layers_and_cells_only(module: str) -> None:
    above = {"cuda_rnn.tasks", "cuda_rnn.losses", "cuda_rnn.model", "cuda_rnn.optim",
             "cuda_rnn.train", "cuda_rnn.checkpoint", "cuda_rnn.experiments", "cuda_rnn.cli",
             "cuda_rnn.plots"}
    reached = _reach(_imports(), module)
    assert {"cuda_rnn.layers", "cuda_rnn.cells"} & reached
    assert not reached & above, f"{module} reaches {sorted(reached & above)}"


def test_only_the_command_line_stands_on_the_experiments() -> None:
    graph = _imports()
    users = {m for m, deps in graph.items() if "cuda_rnn.experiments" in deps}
    assert users == {"cuda_rnn.cli"}
    assert "cuda_rnn.train" in _reach(graph, "cuda_rnn.experiments")
    assert not _reach(graph, "cuda_rnn.train") & {"cuda_rnn.experiments", "cuda_rnn.cli"}


def test_the_package_ships_no_test_helpers() -> None:
    assert not [m for m in _imports() if m.split(".")[-1].startswith("test")]
