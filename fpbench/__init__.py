"""fpbench: checks and measures the claims of Deveney et al., "Closing the ODE-SDE gap in
score-based diffusion models through the Fokker-Planck equation", against exact oracles.

The package is layered; imports flow one way (tests/test_layers.py checks it):
``core`` (the math) -> ``train`` -> ``run`` (suites, the pipeline, the store) -> ``analysis`` (claims,
statistics) -> ``reports``; ``cli`` and ``pytest_plugin`` sit on top. The public face:

    from fpbench import Method, run_suite, load_results, load_model, evaluate
    df, records = run_suite("paper", "smoke")      # runs what the store lacks, then reads it
    df = load_results("paper", "smoke")            # reads only
    model, target, sde, case = load_model(df["key"][0])  # a finished case's trained model
    pairs = evaluate("examples/external_model.py:make_model", "blob", "smoke")  # (baseline, yours) per seed
"""

__version__ = "0.1.0"

_PUBLIC = {"Method": ("fpbench.train.methods", "Method"), "run_suite": ("fpbench.run.execute", "run_suite"),
           "load_results": ("fpbench.run.results", "load_results"),
           "load_model": ("fpbench.run.results", "load_model"),
           "evaluate": ("fpbench.run.execute", "evaluate_model")}
__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str):
    """The public names, imported on first use (``import fpbench`` and ``fpbench --help`` stay light)."""
    if name in _PUBLIC:
        import importlib

        module, attr = _PUBLIC[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'fpbench' has no attribute {name!r}")
