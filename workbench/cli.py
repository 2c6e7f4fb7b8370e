"""Command line: ``workbench run | diagnose | score | simulate | report | export-workspace | plugins``."""

from __future__ import annotations

import argparse
import json
import sys
import tomllib
from pathlib import Path

from workbench.data.events import SchemaError
from workbench.plugin.registry import PluginError
from workbench.spec import SpecError


def _parse_set(items: list[str]) -> dict:
    """``--set a.b=VALUE`` with VALUE parsed as a TOML value (strings may be bare)."""
    out = {}
    for item in items or []:
        if "=" not in item:
            raise SpecError(f"--set expects KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        try:
            out[key.strip()] = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            out[key.strip()] = value
    return out


def cmd_run(args) -> int:
    from workbench.run.runner import run
    from workbench.spec import load_spec

    spec = load_spec(args.spec, _parse_set(args.set))
    result = run(spec, output=args.output, progress=False if args.no_progress else None,
                 executor=args.executor, workers=args.workers, scheduler=args.scheduler,
                 resume=args.resume)
    s = result.summary
    print(json.dumps({k: s.get(k) for k in (
        "n_pseudo_experiments", "n_failed", "coverage", "width", "score", "rmse", "mae")}, indent=1))
    print(f"median inference time per PE: {result.timings['inference_median_s']:.3f} s")
    print(f"results written to {result.directory}")
    return 1 if s.get("n_failed") else 0


def cmd_diagnose(args) -> int:
    from workbench.run.diagnostics import run_diagnostics
    from workbench.spec import load_spec

    spec = load_spec(args.spec, _parse_set(args.set))
    reports = run_diagnostics(spec, output=args.output, only=args.diagnostic)
    out = args.output or spec.output.directory
    for name, report in reports.items():
        summary = report.get("summary", report) if isinstance(report, dict) else report
        print(f"[{name}] " + json.dumps(summary, default=str)[:2000])
    print(f"reports written to {out}/diagnostics/")
    return 0


def cmd_score(args) -> int:
    from workbench.scoring import score

    path = Path(args.results)
    try:
        payload = json.loads(path.read_text())
        rows = [r for r in payload["pseudo_experiments"] if "error" not in r]
        s = score([r["mu_true"] for r in rows], [r["mu16"] for r in rows],
                  [r["mu84"] for r in rows], [r["mu_hat"] for r in rows], eps=args.eps)
    except FileNotFoundError:
        raise SpecError(f"results file {str(path)!r} does not exist") from None
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise SpecError(f"{path} is not a workbench results file: {exc}") from None
    print(json.dumps(s.as_dict(), indent=1))
    return 0


def cmd_simulate(args) -> int:
    from workbench.data.schema import PROCESSES
    from workbench.plugin.registry import get_registry

    counts = {p: getattr(args, p) for p in PROCESSES}
    gen = get_registry().create("generator", args.generator, _parse_set(args.param))
    out = Path(args.out)
    if out.suffix == ".root":
        from workbench.data.io.root import write_root

        events = gen.generate(counts, args.seed)
        write_root(events, out)
    else:
        from workbench.data.io.parquet import ParquetEventWriter
        from workbench.plugin.protocols import ChunkedGenerator

        chunks = (gen.iter_chunks(counts, args.seed, args.chunk_size)
                  if isinstance(gen, ChunkedGenerator) else [gen.generate(counts, args.seed)])
        with ParquetEventWriter(out, row_group_size=args.chunk_size) as writer:
            for chunk in chunks:
                writer.write(chunk)
    print(f"wrote {sum(max(c, 0) for c in counts.values())} events to {out}")
    return 0


def cmd_report(args) -> int:
    from workbench.outputs.report import ReportError, build_report

    try:
        path = build_report(args.results_dir, args.output)
    except ReportError as exc:
        raise SpecError(str(exc)) from None
    print(f"report written to {path}")
    return 0


def cmd_export_workspace(args) -> int:
    from workbench.outputs.workspace import export_workspace
    from workbench.spec import load_spec

    spec = load_spec(args.spec, _parse_set(args.set))
    observation = args.pe if args.pe is not None else "asimov"
    meta = export_workspace(spec, args.output, observation, plots=args.plots,
                            check=not args.no_check)
    print(f"workspace written to {args.output}  (sha256:{meta['digest']['sha256']})")
    if "fit" in meta:
        f = meta["fit"]
        print(f"mu_hat workbench {f['workbench']['mu_hat']:.6f}  pyhf {f['pyhf']['mu_hat']:.6f}"
              f"  |diff| {f['mu_hat_difference']:.2e}")
    return 0


def cmd_plugins(args) -> int:
    from workbench.plugin.registry import get_registry

    registry = get_registry()
    listing = registry.as_dict()
    if args.json:
        print(json.dumps(listing, indent=1))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"workbench plugins (hook API v{listing['hook_api_version']})")
    for col in ("plugin", "distribution", "version", "strategies"):
        table.add_column(col)
    for p in listing["plugins"]:
        strategies = "; ".join(f"{k}: {', '.join(v)}" for k, v in p["strategies"].items())
        if p.get("error"):
            strategies = f"[red]failed to load: {p['error']}[/red]"
        table.add_row(p["name"], p["distribution"] or "-", p["version"] or "-", strategies)
    Console().print(table)
    return 0


def build_parser() -> argparse.ArgumentParser:
    from workbench._version import __version__

    parser = argparse.ArgumentParser(prog="workbench", description=__doc__)
    parser.add_argument("--version", action="version", version=f"workbench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="run a TOML spec end to end")
    p.add_argument("spec")
    p.add_argument("-o", "--output", help="output folder (default: the spec's output.directory)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a spec key, e.g. --set pseudo_experiments.trials=3")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--executor", choices=("inline", "processes", "dask"),
                   help="where pseudo-experiments run (default: the spec's execution.executor)")
    p.add_argument("--workers", type=int, help="worker processes (processes/dask executors)")
    p.add_argument("--scheduler", help="dask.distributed scheduler address, e.g. tcp://host:8786")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run from its checkpoint in the output folder")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("diagnose", help="run a spec's diagnostics (or --diagnostic NAME)")
    p.add_argument("spec")
    p.add_argument("-o", "--output", help="output folder (default: the spec's output.directory)")
    p.add_argument("--diagnostic", action="append", metavar="NAME",
                   help="run only this diagnostic (repeatable); may name one not in the spec")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a spec key")
    p.set_defaults(func=cmd_diagnose)

    p = sub.add_parser("score", help="score a results.json")
    p.add_argument("results")
    p.add_argument("--eps", type=float, default=1e-3, help="width regulariser (1e-3 scoring program, 1e-2 paper)")
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("simulate", help="write simulated events to parquet or ROOT")
    p.add_argument("--out", required=True, help="output file (.parquet or .root)")
    p.add_argument("--generator", default="simulator")
    p.add_argument("--param", action="append", metavar="KEY=VALUE", help="generator parameter")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--chunk-size", type=int, default=500_000,
                   help="events generated and written per parquet row group")
    for proc, default in (("htautau", 10_000), ("ztautau", 100_000), ("ttbar", 10_000), ("diboson", 2_000)):
        p.add_argument(f"--{proc}", type=int, default=default, help=f"{proc} events (default {default})")
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("report", help="write a self-contained HTML report of a results folder")
    p.add_argument("results_dir", help="folder with results.json (and timings.json)")
    p.add_argument("-o", "--output", help="HTML file to write (default: RESULTS_DIR/report.html)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("export-workspace",
                       help="train a spec and write its pyhf workspace (+ digest, fit check)")
    p.add_argument("spec", help="TOML run specification")
    p.add_argument("-o", "--output", required=True, help="workspace JSON file to write")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--pe", type=int, default=None,
                       help="observation: pseudo-experiment N of the spec's plan")
    which.add_argument("--asimov", action="store_true", help="observation: Asimov (default)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a spec key")
    p.add_argument("--plots", action="store_true", help="write template/pull plots next to it")
    p.add_argument("--no-check", action="store_true", help="skip the mu_hat cross-check fit")
    p.set_defaults(func=cmd_export_workspace)

    p = sub.add_parser("plugins", help="list installed plugins and their strategies")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_plugins)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (SpecError, PluginError, SchemaError, KeyError, FileNotFoundError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"workbench: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
