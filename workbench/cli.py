"""The ``workbench`` command line (every subcommand; docs/cli.md is rendered from this parser).

Error policy: an anticipated error (a :class:`workbench.errors.WorkbenchError`, a
schema or plugin error, an I/O error) ends in one line on standard error,
``workbench: error: ...``, naming the culprit and the fix, and exit status 2;
Ctrl-C ends in status 130 after the partial results are written; anything else
is a bug and keeps its traceback (status 3).  ``--debug`` shows the traceback of
anticipated errors too.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import tomllib
import traceback
from pathlib import Path
from typing import Any

from workbench.data.events import SchemaError
from workbench.errors import DataError, ScoreError, SpecError, WorkbenchError
from workbench.plugin.registry import PluginError

DESCRIPTION = (
    "Inference workbench for the FAIR Universe HiggsML Uncertainty Challenge: run a TOML "
    "spec end to end (train, evaluate pseudo-experiments, score), run its diagnostics, "
    "score or report a results file, simulate events to parquet or ROOT, export a pyhf "
    "workspace, and list the installed plugins."
)

EXIT_CODES = {
    0: "success",
    1: "`workbench run`: some pseudo-experiments failed (their errors are in results.json)",
    2: "an anticipated error: usage, spec, plugin or parameter, data file or schema, I/O, "
       "output folder, checkpoint, executor; one line on standard error names the culprit "
       "and the fix",
    3: "an internal error (a bug): the traceback is printed; please report it",
    130: "interrupted (Ctrl-C); `workbench run` writes the finished pseudo-experiments first "
         "(continue with --resume)",
}

ANTICIPATED: tuple[type[BaseException], ...] = (WorkbenchError, SchemaError, PluginError, OSError)
"""What ends in one line and status 2.  ``SchemaError`` and ``PluginError`` are
defined beside the code that raises them (not yet under :class:`WorkbenchError`)."""

log = logging.getLogger("workbench")


# -- helpers -------------------------------------------------------------------------
def _parse_set(items: list[str] | None, option: str = "--set") -> dict:
    """``--set a.b=VALUE`` with VALUE parsed as a TOML value (strings may be bare)."""
    out = {}
    for item in items or []:
        if "=" not in item:
            raise SpecError(f"{option} expects KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        try:
            out[key.strip()] = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            out[key.strip()] = value
    return out


def one_line(exc: BaseException) -> str:
    """An exception's message (and notes) as a single line."""
    text = " ".join(str(exc).split())
    if isinstance(exc, OSError) and exc.strerror:
        text = f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    notes = [" ".join(n.split()) for n in getattr(exc, "__notes__", ())]
    return "; ".join([text or type(exc).__name__, *notes])


def _finite(obj: Any) -> Any:
    """JSON-safe: non-finite floats become null."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


_HANDLER: logging.Handler | None = None


def configure_logging(verbosity: int = 0) -> None:
    """The ``workbench`` logger on standard error: INFO by default, -q WARNING, -qq
    ERROR, -v DEBUG; a rich handler on a terminal, plain ``workbench: level: ...``
    lines otherwise."""
    global _HANDLER
    logger = logging.getLogger("workbench")
    if _HANDLER is not None:
        logger.removeHandler(_HANDLER)
    level = {-2: logging.ERROR, -1: logging.WARNING, 0: logging.INFO}.get(
        max(min(verbosity, 1), -2), logging.DEBUG)
    handler: logging.Handler
    if sys.stderr.isatty():
        from rich.console import Console
        from rich.logging import RichHandler

        handler = RichHandler(console=Console(stderr=True), show_time=False, show_path=False,
                              markup=False, rich_tracebacks=False)
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("workbench: %(levelname)s: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(level)
    _HANDLER = handler


class _StderrHandler(logging.StreamHandler):
    """A stream handler on whatever ``sys.stderr`` is now (pytest swaps it)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        record.levelname = record.levelname.lower()
        super().emit(record)


# -- commands ------------------------------------------------------------------------
def cmd_run(args) -> int:
    from workbench.run.runner import run
    from workbench.spec import load_spec

    spec = load_spec(args.spec, _parse_set(args.set))
    progress = False if (args.no_progress or args.json) else None
    result = run(spec, output=args.output, progress=progress, executor=args.executor,
                 workers=args.workers, scheduler=args.scheduler, resume=args.resume,
                 overwrite=args.overwrite, cache=not args.no_training_cache)
    s = result.summary
    code = 1 if s.get("n_failed") else 0
    if args.json:
        print(json.dumps(_finite({
            "summary": s, "directory": str(result.directory),
            "inference_median_s": result.timings["inference_median_s"],
            "resumed_pes": result.timings["resumed_pes"],
            "training_cached": result.timings.get("training_cached", False),
            "exit_code": code,
        }), indent=1, allow_nan=False))
        return code
    shown = {k: s.get(k) for k in ("n_pseudo_experiments", "n_failed", "coverage", "width",
                                   "score", "rmse", "mae")}
    shown.update({k: s[k] for k in ("n_at_bounds", "n_degenerate") if k in s})
    print(json.dumps(_finite(shown), indent=1))
    median = result.timings["inference_median_s"]
    if median is not None:
        print(f"median inference time per PE: {median:.3f} s")
    print(f"results written to {result.directory}")
    return code


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


def _load_results(path: Path) -> dict[str, Any]:
    if path.is_dir():
        raise ScoreError(f"{path} is a folder; give its results.json ({path / 'results.json'})")
    if not path.exists():
        raise ScoreError(f"results file {str(path)!r} does not exist")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise ScoreError(f"{path} is not a workbench results file (not UTF-8 JSON text)") from None
    try:  # NaN / Infinity tokens are read, then refused by the record check (naming the PE)
        payload = json.loads(text)
    except ValueError as exc:
        raise ScoreError(f"{path} is not a workbench results file (invalid JSON: {exc})") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("pseudo_experiments"), list):
        raise ScoreError(f"{path} is not a workbench results file (no 'pseudo_experiments' list)")
    return payload


def cmd_score(args) -> int:
    from workbench.scoring import score_records

    path = Path(args.results)
    payload = _load_results(path)
    s = score_records(payload["pseudo_experiments"], str(path), eps=args.eps)
    values = s.as_dict()
    bad = [k for k, v in values.items() if isinstance(v, float) and not math.isfinite(v)]
    if bad:
        raise ScoreError(f"{path}: the {', '.join(bad)} is not finite (zero widths with "
                         f"--eps {args.eps}?); use --eps > 0")
    print(json.dumps(values, indent=1, allow_nan=False))
    return 0


def cmd_simulate(args) -> int:
    from workbench.data.schema import PROCESSES
    from workbench.plugin.registry import get_registry

    counts = {p: getattr(args, p) for p in PROCESSES}
    for proc, n in counts.items():
        if n < -1:
            raise SpecError(f"--{proc} {n}: give a number of events >= 0 (or -1: all a file "
                            "source has)")
    if args.chunk_size <= 0:
        raise SpecError(f"--chunk-size {args.chunk_size}: must be positive")
    out = Path(args.out)
    if out.suffix not in (".parquet", ".root"):
        raise SpecError(f"--out {out}: the file must end in .parquet or .root")
    if not out.parent.is_dir():
        raise SpecError(f"--out {out}: folder {out.parent} does not exist; create it first")
    gen = get_registry().create("generator", args.generator, _parse_set(args.param, "--param"))
    try:
        if out.suffix == ".root":
            from workbench.data.io.root import write_root

            write_root(gen.generate(counts, args.seed), out)
        else:
            from workbench.data.io.parquet import ParquetEventWriter
            from workbench.plugin.protocols import ChunkedGenerator

            chunks = (gen.iter_chunks(counts, args.seed, args.chunk_size)
                      if isinstance(gen, ChunkedGenerator) else [gen.generate(counts, args.seed)])
            with ParquetEventWriter(out, row_group_size=args.chunk_size) as writer:
                for chunk in chunks:
                    writer.write(chunk)
    except (WorkbenchError, SchemaError):
        raise
    except ValueError as exc:
        raise DataError(f"generator {args.generator!r}: {exc}") from exc
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
                            check=not args.no_check, condition=not args.no_condition)
    print(f"workspace written to {args.output}  (sha256:{meta['digest']['sha256']})")
    if "fit" in meta:
        f = meta["fit"]
        print(f"mu_hat workbench {f['workbench']['mu_hat']:.6f}  pyhf {f['pyhf']['mu_hat']:.6f}"
              f"  |diff| {f['mu_hat_difference']:.2e}")
    return 0


def strategy_listing(registry) -> dict[str, dict[str, dict[str, Any]]]:
    """Kind -> name -> plugin, summary and parameters (default and type) of every strategy."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for kind in sorted(registry.strategies):
        for name in sorted(registry.strategies[kind]):
            st = registry.strategies[kind][name]
            try:
                defaults, types = st.parameters, st.parameter_types
            except Exception as exc:  # noqa: BLE001 - a broken plugin must not stop the listing
                defaults, types = {}, {"error": f"{type(exc).__name__}: {exc}"}
            out.setdefault(kind, {})[name] = {
                "plugin": st.plugin,
                "summary": st.summary,
                "parameters": {p: {"default": _json_safe(defaults.get(p)),
                                   "type": types.get(p, "any")} for p in defaults},
            }
    return out


def _json_safe(value: Any) -> Any:
    try:
        json.dumps(value, allow_nan=False)
        return value
    except (TypeError, ValueError):
        return repr(value)


def cmd_plugins(args) -> int:
    from workbench.plugin.registry import get_registry

    registry = get_registry()
    listing = registry.as_dict()
    strategies = strategy_listing(registry)
    if args.json:
        print(json.dumps({**listing, "strategy_details": strategies}, indent=1))
        return 0
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(title=f"workbench plugins (hook API v{listing['hook_api_version']})")
    for col in ("plugin", "distribution", "version", "strategies"):
        table.add_column(col)
    for p in listing["plugins"]:
        text = Text("; ".join(f"{k}: {', '.join(v)}" for k, v in p["strategies"].items()))
        if p.get("error"):
            text = Text(f"failed to load: {p['error']}", style="red")
        table.add_row(p["name"], p["distribution"] or "-", p["version"] or "-", text)
    console = Console()
    console.print(table)
    details = Table(title="strategies")
    for col in ("kind", "name", "plugin", "summary", "parameters (default: type)"):
        details.add_column(col)
    for kind, by_name in strategies.items():
        for name, info in by_name.items():
            params = ", ".join(f"{p}={d['default']!r}: {d['type']}"
                               for p, d in info["parameters"].items()) or "-"
            details.add_row(kind, name, info["plugin"], Text(info["summary"] or "-"),
                            Text(params))
    console.print(details)
    return 0


# -- the parser ----------------------------------------------------------------------
def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    g = common.add_argument_group("output and errors")
    g.add_argument("-q", "--quiet", action="count", default=0,
                   help="fewer messages on standard error: -q warnings and errors only, "
                        "-qq errors only")
    g.add_argument("-v", "--verbose", action="count", default=0,
                   help="more messages on standard error (debug level)")
    g.add_argument("--debug", action="store_true",
                   help="show the traceback of an anticipated error too (for bug reports)")
    return common


class _ParagraphFormatter(argparse.HelpFormatter):
    """Wraps each paragraph of a description on its own (argparse joins them all)."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        import textwrap

        return "\n\n".join(textwrap.fill(" ".join(p.split()), width, initial_indent=indent,
                                          break_on_hyphens=False,
                                          subsequent_indent=indent)
                            for p in text.split("\n\n"))


def build_parser() -> argparse.ArgumentParser:
    from workbench._version import __version__

    fmt = _ParagraphFormatter
    parser = argparse.ArgumentParser(prog="workbench", description=DESCRIPTION,
                                     formatter_class=fmt)
    parser.add_argument("--version", action="version", version=f"workbench {__version__}",
                        help="print the version and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                title="commands")
    common = [_common()]

    def command(name: str, summary: str, description: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=summary, description=description, parents=common,
                              formatter_class=fmt)

    p = command("run", "run a TOML spec end to end", (
        "Validate the TOML spec, train the strategies once, run every pseudo-experiment and "
        "write results.json, timings.json, checkpoint.jsonl, training.pkl (the trained "
        "pipeline), workspace.json, the plots and report.html to the output folder.  Prints "
        "the summary and the median inference time per pseudo-experiment.\n\n"
        "The output folder is locked while the run writes it: a second run into it fails at "
        "once.  A folder that holds an earlier run's checkpoint is continued with --resume "
        "(the final results.json is byte-identical to an uninterrupted run's, and the cached "
        "training is used) or started again with --overwrite; without either the run "
        "refuses to start."))
    p.add_argument("spec", metavar="SPEC", help="the TOML spec file")
    p.add_argument("-o", "--output", metavar="OUTPUT",
                   help="output folder (default: the spec's output.directory)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a spec key: a dotted path and a TOML value (bare words are "
                        "strings), repeatable, e.g. --set pseudo_experiments.trials=3")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--executor", choices=("inline", "processes", "dask"),
                   help="where pseudo-experiments run (default: the spec's "
                        "execution.executor, else inline)")
    p.add_argument("--workers", type=int, metavar="N",
                   help="worker processes of the processes executor or a local dask cluster "
                        "(default: one per CPU core)")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="a dask.distributed scheduler, e.g. tcp://host:8786 (needs --executor "
                        "dask; it is contacted before training); without it dask starts a "
                        "local cluster")
    again = p.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true",
                       help="continue an interrupted run from the checkpoint in the output "
                            "folder (same spec; output settings and executor may differ)")
    again.add_argument("--overwrite", action="store_true",
                       help="start again in an output folder that holds an earlier run, "
                            "discarding its checkpoint and training cache")
    p.add_argument("--no-training-cache", action="store_true",
                   help="neither write nor use training.pkl (--resume then trains again)")
    p.add_argument("--json", action="store_true",
                   help="print one JSON document (summary, folder, timing, exit code) on "
                        "standard output; everything else goes to standard error")
    p.set_defaults(func=cmd_run)

    p = command("diagnose", "run a spec's diagnostics", (
        "Train the spec's pipeline once and run its [[diagnostics]] (or those named with "
        "--diagnostic); each report is written to OUTPUT/diagnostics/NAME.json as soon as it "
        "is done, and a one-line summary of each is printed."))
    p.add_argument("spec", metavar="SPEC", help="the TOML spec file")
    p.add_argument("-o", "--output", metavar="OUTPUT",
                   help="output folder (default: the spec's output.directory)")
    p.add_argument("--diagnostic", action="append", metavar="NAME",
                   help="run only this diagnostic (repeatable); may name one not in the spec")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a spec key (as for run)")
    p.set_defaults(func=cmd_diagnose)

    p = command("score", "score a results.json", (
        "Recompute the score of a results.json from its pseudo-experiment records and print "
        "it as JSON (n, width, coverage, coverage_low, coverage_high, penalty, score, rmse, "
        "mae, eps).  Failed pseudo-experiments are left out; a record with a missing or "
        "non-finite value or with mu16 > mu84 is an error naming the file, trial and PE."))
    p.add_argument("results", metavar="RESULTS_JSON", help="a results.json file")
    p.add_argument("--eps", type=float, default=1e-3,
                   help="width regulariser (default: %(default)s, the scoring program's; the "
                        "paper writes 1e-2)")
    p.set_defaults(func=cmd_score)

    p = command("simulate", "write simulated events to parquet or ROOT", (
        "Write events from a generator (default the built-in simulator) to a parquet file, "
        "or to a ROOT file when FILE ends in .root, in the public dataset's schema, with a "
        "FILE_STEM_metadata.json beside a parquet file.  Parquet is written in chunks of "
        "--chunk-size events when the generator can stream, so large files need little "
        "memory, and with page checksums.  Weights per process sum to one "
        "pseudo-experiment's expected yield at 10 fb^-1.  The file can then be a data source "
        "of the parquet or root generator."))
    p.add_argument("--out", required=True, metavar="FILE",
                   help="output file, .parquet or .root, in an existing folder")
    p.add_argument("--generator", default="simulator", metavar="NAME",
                   help="generator strategy (default: %(default)s)")
    p.add_argument("--param", action="append", metavar="KEY=VALUE",
                   help="a generator parameter (TOML value), repeatable")
    p.add_argument("--seed", type=int, default=0, help="seed (default: %(default)s)")
    p.add_argument("--chunk-size", type=int, default=500_000, metavar="N",
                   help="events generated and written per parquet row group "
                        "(default: %(default)s)")
    for proc, default in (("htautau", 10_000), ("ztautau", 100_000), ("ttbar", 10_000),
                          ("diboson", 2_000)):
        p.add_argument(f"--{proc}", type=int, default=default, metavar="N",
                       help=f"{proc} events (default: %(default)s)")
    p.set_defaults(func=cmd_simulate)

    p = command("report", "write a self-contained HTML report of a results folder", (
        "Write a self-contained HTML report of a results folder: the score table (coverage "
        "against the 0.6827 +- 2 sigma68 band, width, score, RMSE, MAE, failures, intervals "
        "flagged at the fit's bounds or from degenerate templates), coverage against mu_true "
        "with binomial errors, mu_hat against mu_true, nuisance-parameter pulls, a per-mu "
        "coverage table, the failed pseudo-experiments and the timings.  Plots are embedded "
        "as PNG and the CSS is inline: the page needs no network and no script.  It reads "
        "results.json and, if present, timings.json, so it also works on the folder of an "
        "interrupted or older run."))
    p.add_argument("results_dir", metavar="RESULTS_DIR",
                   help="folder with results.json (and timings.json)")
    p.add_argument("-o", "--output", metavar="OUTPUT",
                   help="the HTML file to write (default: RESULTS_DIR/report.html)")
    p.set_defaults(func=cmd_report)

    p = command("export-workspace", "train a spec and write its pyhf workspace", (
        "Train the spec's pipeline and write its pyhf workspace with the Asimov data or one "
        "planned pseudo-experiment as observation, plus a digest and a cross-check of "
        "mu_hat between the workbench's fit and pyhf's."))
    p.add_argument("spec", metavar="SPEC", help="the TOML spec file")
    p.add_argument("-o", "--output", required=True, metavar="OUTPUT",
                   help="workspace JSON file to write")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--pe", type=int, default=None, metavar="N",
                       help="observation: pseudo-experiment N of the spec's plan")
    which.add_argument("--asimov", action="store_true", help="observation: Asimov (default)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a spec key (as for run)")
    p.add_argument("--plots", action="store_true", help="write template and pull plots beside it")
    p.add_argument("--no-check", action="store_true", help="skip the mu_hat cross-check fit")
    p.add_argument("--no-condition", action="store_true",
                   help="write the model as built: no staterror fixing, pruning or gamma bounds "
                        "(by default the workspace is conditioned so pyhf and cabinetry fit it "
                        "at their default settings)")
    p.set_defaults(func=cmd_export_workspace)

    p = command("plugins", "list installed plugins and their strategies", (
        "List the installed plugins (entry points of the group workbench): each plugin's "
        "name, distribution and version and the strategies it registered, then every "
        "strategy with its summary and parameters (default and type).  A plugin that fails "
        "to import is listed with its error instead of stopping the workbench."))
    p.add_argument("--json", action="store_true",
                   help="print the listing as JSON: plugins, and strategy_details (kind -> "
                        "name -> plugin, summary, parameters)")
    p.set_defaults(func=cmd_plugins)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose - args.quiet)
    try:
        return args.func(args)
    except KeyboardInterrupt as exc:
        if args.debug:
            traceback.print_exc()
        notes = [" ".join(n.split()) for n in getattr(exc, "__notes__", ())]
        print("workbench: interrupted" + "".join(f"; {n}" for n in notes), file=sys.stderr)
        return 130
    except ANTICIPATED as exc:
        if args.debug:
            traceback.print_exc()
        print(f"workbench: error: {one_line(exc)}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - a bug: keep the traceback
        traceback.print_exc()
        print(f"workbench: internal error ({type(exc).__name__}); this is a bug: please "
              "report it with the traceback above (and --debug output)", file=sys.stderr)
        return 3


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
