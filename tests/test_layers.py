"""The package's layers: imports flow one way, core -> train -> run -> analysis -> reports -> the
command line and the pytest plugin; no module reaches a private name of another module."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "fpbench"
LAYERS = ["core", "train", "run", "analysis", "reports"]
TOP = len(LAYERS)  # cli, pytest_plugin, __main__


def _layer(module: str) -> int | None:
    """The rank of ``fpbench.<module...>``; None for the package root (it imports nothing eagerly)."""
    head = module.split(".")[0]
    return LAYERS.index(head) if head in LAYERS else (None if head == "" else TOP)


def _imports(path: Path):
    """(line, imported fpbench module relative to the package, imported names) of every import in ``path``."""
    here = path.relative_to(PACKAGE).with_suffix("").parts[:-1]  # the module's package, inside fpbench
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(here[:len(here) - node.level + 1])
                module = ".".join(base + ([node.module] if node.module else []))
            elif node.module and (node.module == "fpbench" or node.module.startswith("fpbench.")):
                module = node.module.removeprefix("fpbench").lstrip(".")
            else:
                continue
            yield node.lineno, module, [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("fpbench."):
                    yield node.lineno, alias.name.removeprefix("fpbench."), []


MODULES = sorted(p for p in PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=[str(p.relative_to(PACKAGE)) for p in MODULES])
def test_no_module_imports_from_a_layer_above_it(path):
    rel = path.relative_to(PACKAGE)
    own = _layer(".".join(rel.with_suffix("").parts)) if len(rel.parts) > 1 else TOP
    upward = [f"line {line}: {module}" for line, module, _ in _imports(path)
              if (rank := _layer(module)) is not None and rank > own]
    assert not upward, f"{rel} ({(LAYERS + ['top'])[own]}) imports from above: {upward}"


@pytest.mark.parametrize("path", MODULES, ids=[str(p.relative_to(PACKAGE)) for p in MODULES])
def test_no_module_imports_a_private_name_of_another(path):
    private = [f"line {line}: {module}.{name}" for line, module, names in _imports(path) for name in names
               if name.startswith("_") and not name.startswith("__")]
    assert not private, f"{path.relative_to(PACKAGE)} imports private names: {private}"


def test_the_layer_test_sees_an_upward_import(tmp_path, monkeypatch):
    fake = tmp_path / "fpbench"
    (fake / "core").mkdir(parents=True)
    (fake / "core" / "bad.py").write_text("from ..analysis.claims import CLAIMS\nfrom .sde import _private\n")
    monkeypatch.setattr(__import__(__name__, fromlist=["PACKAGE"]), "PACKAGE", fake)
    with pytest.raises(AssertionError, match="imports from above"):
        test_no_module_imports_from_a_layer_above_it(fake / "core" / "bad.py")
    with pytest.raises(AssertionError, match="imports private names"):
        test_no_module_imports_a_private_name_of_another(fake / "core" / "bad.py")


# fpbench.run's modules that compute (train, sample, measure, run cases): a report writer reads what they
# stored and may import their settings (UPPERCASE constants), never their functions (``fpbench report``
# measures nothing; tests/test_pipeline.py checks it at run time too).
RUN_COMPUTE_MODULES = {"run.evaluate", "run.pipeline", "run.execute", "run.lab", "run.bench", "run.gpu_check",
                       "run.external", "run.budget"}


@pytest.mark.parametrize("path", sorted(PACKAGE.glob("reports/*.py")), ids=lambda p: p.name)
def test_no_report_writer_imports_from_the_run_layers_compute_modules(path):
    rel = str(path.relative_to(PACKAGE))
    for line, module, names in _imports(path):
        if module in RUN_COMPUTE_MODULES:
            assert names and all(n.isupper() for n in names), \
                f"{rel}:{line} imports {names} from {module}, which computes; a report only reads"
