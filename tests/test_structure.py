"""The package's shape: no import cycle, no overlong function, every default declared once."""

import ast
import dataclasses
from pathlib import Path

import latentfit

SRC = Path(latentfit.__file__).parent
#: The longest a function in `src/` may be (lines, decorators and docstring included).
LONGEST = 80


def _module(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The package's modules that `path` imports anywhere (at the top, inside functions, for typing)."""
    name = _module(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(node.level - 1):
                base = base.rpartition(".")[0]
            target = (f"{base}.{node.module}" if node.module else base) if node.level else node.module
            found |= {f"{target}.{a.name}" if f"{target}.{a.name}" in modules else target for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    return (found & modules) - {name}


def test_no_module_of_the_package_imports_itself_back():
    paths = {_module(p): p for p in SRC.rglob("*.py")}
    graph = {name: _imports(path, set(paths)) for name, path in paths.items()}

    def reaches(start: str, goal: str) -> bool:
        seen, todo = set(), list(graph[start])
        while todo:
            name = todo.pop()
            if name == goal:
                return True
            if name not in seen:
                seen.add(name)
                todo.extend(graph[name])
        return False

    cycles = sorted(name for name in graph if reaches(name, name))
    assert not cycles, f"modules on an import cycle: {cycles}"


def test_no_function_is_longer_than_a_screen():
    long = [(f"{_module(path)}.{node.name}", node.end_lineno - node.lineno + 1)
            for path in SRC.rglob("*.py") for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > LONGEST]
    assert not long, long


def test_every_option_that_names_a_setting_takes_its_default_from_the_one_declaration():
    """Defaults are declared once: encode's options that are `RefinementConfig` fields default to the
    field's default, eval's protocol options to `PAPERS_PROTOCOL`'s; every setting but a few library-only
    ones is an encode option (a new setting without an option, or a default changed in one place only,
    fails here)."""
    import typer.main

    from latentfit import cli
    from latentfit.config import PAPERS_PROTOCOL, RefinementConfig
    from latentfit.training import TrainConfig

    commands = typer.main.get_command(cli.app).commands
    defaults = RefinementConfig()
    encode = {param.name: param.default for param in commands["encode"].params}
    shared = {name for name in encode if name in cli.REFINEMENT_FIELDS}
    declared = shared - cli.DERIVED_DEFAULTS  # the rest default to None: chosen from another option
    assert all(encode[name] is None for name in cli.DERIVED_DEFAULTS)
    assert declared and all(encode[name] == getattr(defaults, name) for name in declared), {
        name: (encode[name], getattr(defaults, name)) for name in declared if encode[name] != getattr(defaults, name)}
    library_only = {"proxy_options", "record_trace", "lr_final_fraction", "min_improvement", "closed_loop_step"}
    assert {f.name for f in dataclasses.fields(RefinementConfig)} - shared == library_only
    evaluate = {param.name: param.default for param in commands["eval"].params}
    assert cli.EVAL_PROTOCOL_OPTIONS <= set(evaluate)
    assert all(evaluate[name] == getattr(PAPERS_PROTOCOL, name) for name in cli.EVAL_PROTOCOL_OPTIONS)
    train = {param.name: param.default for param in commands["train"].params}
    names = {"n": "N", "m": "M"}
    declared = {f.name for f in dataclasses.fields(TrainConfig)}
    shared_train = {name for name in train if names.get(name, name) in declared and train[name] is not None}
    assert {"architecture", "n", "m", "steps", "lr", "trainable"} <= shared_train
    assert all(train[name] == getattr(TrainConfig, names.get(name, name)) for name in shared_train)
