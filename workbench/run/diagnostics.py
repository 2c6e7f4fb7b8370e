"""Running a spec's diagnostics on top of its trained pipeline."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from workbench.outputs.files import write_json
from workbench.pipeline import Pipeline, train
from workbench.plugin.protocols import DiagnosticContext
from workbench.plugin.registry import PluginError, Registry, get_registry
from workbench.seeds import derive_seed
from workbench.spec import Spec, StrategySpec


def run_diagnostics(spec: Spec, registry: Registry | None = None,
                    output: str | Path | None = None, only: list[str] | None = None,
                    pipeline: Pipeline | None = None) -> dict[str, Any]:
    """Train the spec's pipeline once and run its ``[[diagnostics]]`` (or ``only``).

    Each report is written to ``<output>/diagnostics/<name>.json`` as soon as it
    is done, so a failing diagnostic does not lose the earlier ones.
    """
    registry = registry or get_registry()
    outdir = Path(output or spec.output.directory)
    chosen = list(spec.diagnostics)
    if only:
        names = {d.name for d in chosen}
        for name in only:
            if name not in names:
                chosen.append(StrategySpec(name))
        chosen = [d for d in chosen if d.name in only]
    if not chosen:
        raise PluginError(
            f"no diagnostics to run: add [[diagnostics]] to the spec or name one; installed: "
            f"{', '.join(registry.names('diagnostic')) or '(none)'}"
        )
    diagnostics = [(d.name, registry.create("diagnostic", d.name, d.params)) for d in chosen]
    pipeline = pipeline or train(spec, registry)
    reports: dict[str, Any] = {}
    for name, diagnostic in diagnostics:
        ctx = DiagnosticContext(spec=spec, registry=registry, pipeline=pipeline,
                                output=outdir / "diagnostics",
                                seed=derive_seed(spec.seed, "diagnostic", name))
        t0 = time.perf_counter()
        report = diagnostic.run(ctx)
        reports[name] = report
        write_json(outdir / "diagnostics" / f"{name}.json", report)
        write_json(outdir / "diagnostics" / f"{name}.timing.json",
                   {"seconds": time.perf_counter() - t0})
    return reports


__all__ = ["run_diagnostics"]
