"""A run's results as one self-contained HTML page (``workbench report RESULTS_DIR``).

The page embeds its plots as base64 PNG and its CSS inline and refers to nothing
outside itself (no URL, no script), so it can be mailed, archived with the
results or opened on a machine without network.  It reads only ``results.json``
and, when present, ``timings.json``: a report can be rebuilt from the files of
any earlier run.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from workbench.outputs.plots import _pyplot, coverage_by_mu
from workbench.scoring import flag_warnings

CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 70em; color: #222; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; margin-top: 1.8em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.6em 0; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.7em; text-align: right; }
th { background: #f2f2f2; } td.text, th.text { text-align: left; }
.ok { color: #11772d; font-weight: bold; } .bad { color: #b3261e; font-weight: bold; }
.figs { display: flex; flex-wrap: wrap; gap: 1em; } figure { margin: 0; }
figcaption { font-size: 0.9em; color: #555; max-width: 36em; }
img { max-width: 100%; } .muted { color: #777; } code { background: #f5f5f5; padding: 0 0.2em; }
"""


class ReportError(ValueError):
    """The results folder cannot be reported on; the message names the file."""


def load_run(results_dir: str | Path) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """``results.json`` (required) and ``timings.json`` (``None`` if absent) of a run."""
    folder = Path(results_dir)
    path = folder / "results.json"
    if not path.exists():
        raise ReportError(f"{path} does not exist: is {str(folder)!r} a workbench results folder?")
    try:
        results = json.loads(path.read_text())
        results["summary"], results["pseudo_experiments"]  # noqa: B018 - shape check
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ReportError(f"{path} is not a workbench results file: {exc}") from None
    timings = None
    tpath = folder / "timings.json"
    if tpath.exists():
        try:
            timings = json.loads(tpath.read_text())
        except json.JSONDecodeError as exc:
            raise ReportError(f"{tpath} is not valid JSON: {exc}") from None
    return results, timings


def fmt(value: Any, digits: int = 4) -> str:
    """Numbers to ``digits`` significant figures; ``None``/NaN as a dash."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return "–" if not np.isfinite(value) else f"{float(value):.{digits}g}"
    return str(value)


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _table(header: list[str], rows: list[Any], table_id: str,
           text_columns: tuple[int, ...] = (0,), row_ids: list[str] | None = None) -> str:
    """An HTML table; cells get ``id="{table_id}-{row_id}-{column}"`` when row ids are given."""
    head = "".join(f'<th class="{"text" if i in text_columns else ""}">{_e(h)}</th>'
                   for i, h in enumerate(header))
    body = []
    for r, row in enumerate(rows):
        cells = []
        for i, value in enumerate(row):
            cls = ' class="text"' if i in text_columns else ""
            cid = (f' id="{_e(table_id)}-{_e(row_ids[r])}-{i}"' if row_ids else "")
            cells.append(f"<td{cls}{cid}>{value if isinstance(value, _Raw) else _e(fmt(value))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f'<table id="{_e(table_id)}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


class _Raw(str):
    """Already-escaped HTML for a table cell."""


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _figure(fig, plt, alt: str, caption: str, fig_id: str) -> str:
    data = _png(fig)
    plt.close(fig)
    return (f'<figure id="{fig_id}"><img alt="{_e(alt)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{_e(caption)}</figcaption></figure>")


def _ok_records(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if "error" not in r]


def _coverage_band(summary: dict[str, Any], n: int, cl: float) -> tuple[float, float]:
    if summary.get("coverage_low") is not None and summary.get("coverage_high") is not None:
        return float(summary["coverage_low"]), float(summary["coverage_high"])
    s68 = np.sqrt(cl * (1 - cl) / max(n, 1))
    return cl - 2 * s68, cl + 2 * s68


def _score_section(summary: dict[str, Any], cl: float) -> str:
    n = int(summary.get("n") or 0)
    lo, hi = _coverage_band(summary, n, cl)
    cov = summary.get("coverage")
    if cov is None:
        verdict = _Raw('<span class="bad">no successful pseudo-experiment</span>')
    elif cov < lo:
        verdict = _Raw('<span class="bad">under-covers</span>')
    elif cov > hi:
        verdict = _Raw('<span class="bad">over-covers</span>')
    else:
        verdict = _Raw('<span class="ok">inside the band</span>')
    rows = [
        ["pseudo-experiments", summary.get("n_pseudo_experiments"), ""],
        ["failed", summary.get("n_failed"), "raised an error; left out of the score"],
        ["coverage", cov, verdict],
        ["target band", _Raw(f"{_e(fmt(lo))} – {_e(fmt(hi))}"),
         f"{cl} ± 2 σ68, σ68 = sqrt({cl}·(1−{cl})/N)"],
        ["mean width", summary.get("width"), "mean of mu84 − mu16"],
        ["coverage penalty f", summary.get("penalty"), "1 inside the band"],
        ["score", summary.get("score"), f"−ln((width + eps)·f), eps = {fmt(summary.get('eps'))}"],
        ["RMSE", summary.get("rmse"), "scoring program's per-PE RMSE, averaged"],
        ["MAE", summary.get("mae"), "scoring program's per-PE MAE, averaged"],
        ["complete", summary.get("complete"), "every planned pseudo-experiment finished"],
    ]
    ids = ["n_pseudo_experiments", "n_failed", "coverage", "band", "width", "penalty", "score",
           "rmse", "mae", "complete"]
    return "<h2>Score</h2>" + _table(["quantity", "value", "note"], rows, "score",
                                     text_columns=(0, 2), row_ids=ids)


def coverage_table_rows(records: list[dict[str, Any]], bins: int | None = None):
    """Per-mu coverage rows: ``(mu_low, mu_high, n, covered, coverage, cp_low, cp_high)``
    with the Clopper-Pearson 68.27% interval of the coverage."""
    ok = _ok_records(records)
    if not ok:
        return []
    n_mu = len({r["mu_true"] for r in ok})
    bins = bins or int(min(10, max(1, n_mu)))
    edges, c, interval, n = coverage_by_mu(ok, bins=bins)
    k = np.rint(c * n)
    return [(float(edges[i]), float(edges[i + 1]), int(n[i]), int(k[i]) if n[i] else 0,
             float(c[i]), float(interval[0, i]), float(interval[1, i])) for i in range(bins)]


def _coverage_section(records, cl: float, summary: dict[str, Any], plt) -> tuple[str, str]:
    ok = _ok_records(records)
    rows = coverage_table_rows(ok)
    table = _table(["mu_true from", "to", "PEs", "covered", "coverage",
                    "68.27% CP low", "68.27% CP high"],
                   [list(r) for r in rows], "coverage-by-mu", text_columns=(),
                   row_ids=[str(i) for i in range(len(rows))])
    edges = np.array([r[0] for r in rows] + [rows[-1][1]])
    c = np.array([r[4] for r in rows])
    err = np.abs(np.array([[r[5] for r in rows], [r[6] for r in rows]]) - c)
    lo, hi = _coverage_band(summary, len(ok), cl)
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    centres = 0.5 * (edges[1:] + edges[:-1])
    ax.errorbar(centres, c, yerr=err, xerr=np.diff(edges) / 2, fmt="o", color="k",
                label="coverage (Clopper-Pearson 68%)")
    ax.axhspan(lo, hi, alpha=0.25, color="tab:green", label=rf"${cl} \pm 2\sigma_{{68}}$ (pooled)")
    ax.axhline(cl, color="tab:green", ls="--")
    ax.set_xlabel(r"$\mu_{true}$")
    ax.set_ylabel("coverage")
    ax.set_ylim(0, 1.05)
    ax.legend(loc="lower right", fontsize="small")
    fig_html = _figure(fig, plt, "coverage versus mu_true",
                       "Fraction of pseudo-experiments whose interval contains mu_true, in bins "
                       "of mu_true; the band is the score's tolerance for the pooled coverage.",
                       "fig-coverage")
    return fig_html, "<h2>Coverage by mu_true</h2>" + table


def _mu_hat_figure(records, plt) -> str:
    ok = _ok_records(records)
    mu = np.array([r["mu_true"] for r in ok])
    mu_hat = np.array([r["mu_hat"] for r in ok])
    lo = np.array([r["mu16"] for r in ok])
    hi = np.array([r["mu84"] for r in ok])
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    ax.errorbar(mu, mu_hat, yerr=[np.maximum(mu_hat - lo, 0), np.maximum(hi - mu_hat, 0)],
                fmt=".", alpha=0.5, label=r"$\hat\mu$ and interval")
    span = [min(mu.min(), lo.min()), max(mu.max(), hi.max())]
    ax.plot(span, span, "k--", label=r"$\hat\mu = \mu_{true}$")
    ax.set_xlabel(r"$\mu_{true}$")
    ax.set_ylabel(r"$\hat\mu$")
    ax.legend(loc="upper left", fontsize="small")
    return _figure(fig, plt, "mu_hat versus mu_true",
                   "Each pseudo-experiment's estimate with its interval [mu16, mu84].", "fig-mu-hat")


def _pulls_figure(records, plt) -> str:
    ok = _ok_records(records)
    names = sorted({k for r in ok for k in r.get("nuisances_fit", {})})
    if not names:
        return ""
    fig, ax = plt.subplots(figsize=(6.5, 0.55 * len(names) + 1.8))
    for i, name in enumerate(names):
        vals = np.array([r.get("nuisances_fit", {}).get(name, np.nan) for r in ok], float)
        errs = np.array([r.get("nuisance_errors", {}).get(name, np.nan) for r in ok], float)
        if np.isfinite(vals).any():
            ax.plot(vals, np.full_like(vals, i), "|", alpha=0.3, color="tab:blue")
            ax.errorbar(np.nanmean(vals), i,
                        xerr=np.nanmean(errs) if np.isfinite(errs).any() else None,
                        fmt="o", color="k")
    ax.axvspan(-1, 1, color="tab:green", alpha=0.2)
    ax.axvline(0, color="k", ls="--")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel(r"fitted $\theta$ (dot: mean, bar: mean error; ticks: each PE)")
    return _figure(fig, plt, "nuisance-parameter pulls",
                   "Fitted nuisance parameters in the strategy's own parametrisation.", "fig-pulls")


def _percentiles(values) -> list[Any]:
    v = np.asarray([x for x in values if x is not None], float)
    v = v[np.isfinite(v)]
    if not len(v):
        return [0, None, None, None, None, None, None]
    return [len(v), float(np.median(v)), float(np.mean(v)), *np.percentile(v, [5, 95]).tolist(),
            float(v.max()), float(v.sum())]


def timing_rows(timings: dict[str, Any]) -> list[list[Any]]:
    """Per-PE timing statistics: one row per key of ``per_pe`` (sample, inference, ...)."""
    per_pe = timings.get("per_pe") or []
    keys = sorted({k for t in per_pe for k in t}, key=lambda k: (k != "sample", k != "inference", k))
    return [[k, *_percentiles([t.get(k) for t in per_pe])] for k in keys]


def _timings_section(timings: dict[str, Any] | None) -> str:
    if timings is None:
        return "<h2>Timings</h2><p class=\"muted\">no timings.json in this folder</p>"
    out = ["<h2>Timings</h2>"]
    training = timings.get("training") or {}
    if training:
        out.append("<h3>Training (once per run)</h3>")
        out.append(_table(["step", "seconds"], [[k, v] for k, v in training.items()], "training",
                          row_ids=list(training)))
    rows = timing_rows(timings)
    if rows:
        out.append("<h3>Per pseudo-experiment (seconds)</h3>")
        out.append(_table(["step", "PEs", "median", "mean", "5%", "95%", "max", "total"], rows,
                          "per-pe", row_ids=[r[0] for r in rows]))
    machine = timings.get("machine") or {}
    facts = [["wall time (s)", timings.get("wall_s")], ["executor", timings.get("executor")],
             ["workers", timings.get("workers")], ["resumed PEs", timings.get("resumed_pes")],
             *[[f"machine: {k}", v] for k, v in machine.items()]]
    out.append(_table(["", ""], [f for f in facts if f[1] is not None], "run-facts"))
    return "".join(out)


def _failures_section(records: list[dict[str, Any]]) -> str:
    failed = [r for r in records if "error" in r]
    if not failed:
        return ""
    rows = [[r.get("trial"), r.get("pe"), r.get("mu_true"), r["error"]] for r in failed[:50]]
    more = (f"<p class=\"muted\">… and {len(failed) - 50} more</p>" if len(failed) > 50 else "")
    return ("<h2>Failed pseudo-experiments</h2>"
            + _table(["trial", "PE", "mu_true", "error"], rows, "failures", text_columns=(3,))
            + more)


def _spec_section(results: dict[str, Any]) -> str:
    spec = results.get("spec") or {}

    def strategy(key):
        s = spec.get(key) or {}
        if not s:
            return "–"
        params = json.dumps(s.get("params") or {}, sort_keys=True)
        return f"{s.get('name')} {params}"

    data = spec.get("data") or {}
    generator = data.get("generator") or {}
    pes = spec.get("pseudo_experiments") or {}
    rows = [
        ["name", spec.get("name")], ["seed", spec.get("seed")],
        ["generator", f"{generator.get('name', '–')} "
                      f"{json.dumps(generator.get('params') or {}, sort_keys=True)}"],
        ["luminosity (fb⁻¹)", data.get("luminosity_fb")],
        ["classifier", strategy("classifier")], ["template", strategy("template")],
        ["interval", strategy("interval")],
        ["pseudo-experiments", f"{pes.get('trials')} trials × {pes.get('per_trial')}"],
        ["mu range", json.dumps(pes.get("mu_range"))],
        ["randomised NPs", ", ".join(pes.get("randomise") or []) or "none"],
        ["fixed NPs", json.dumps(pes.get("fixed") or {}, sort_keys=True)],
        ["workbench version", results.get("workbench_version")],
        ["spec digest", results.get("spec_digest")],
    ]
    return "<h2>Run</h2>" + _table(["", ""], rows, "spec", text_columns=(0, 1))


def render_report(results: dict[str, Any], timings: dict[str, Any] | None,
                  title: str | None = None) -> str:
    """The HTML text of the report (see :func:`build_report`)."""
    plt = _pyplot()
    summary = results.get("summary") or {}
    records = results.get("pseudo_experiments") or []
    cl = float(((results.get("spec") or {}).get("scoring") or {}).get("confidence_level", 0.6827))
    name = (results.get("spec") or {}).get("name", "run")
    title = title or f"workbench report: {name}"
    parts = [f"<h1>{_e(title)}</h1>", _score_section(summary, cl)]
    parts += [f'<p class="bad warning">Warning: {_e(w)}.</p>' for w in flag_warnings(summary)]
    if _ok_records(records):
        cov_fig, cov_table = _coverage_section(records, cl, summary, plt)
        parts.append('<h2>Plots</h2><div class="figs">' + cov_fig + _mu_hat_figure(records, plt)
                     + _pulls_figure(records, plt) + "</div>")
        parts.append(cov_table)
    else:
        parts.append('<p class="bad">No successful pseudo-experiment: nothing to plot.</p>')
    parts += [_failures_section(records), _timings_section(timings), _spec_section(results)]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{_e(title)}</title><style>{CSS}</style></head><body>"
            + "\n".join(p for p in parts if p) + "</body></html>\n")


def build_report(results_dir: str | Path, output: str | Path | None = None) -> Path:
    """Write ``report.html`` (or ``output``) for a results folder and return its path."""
    results, timings = load_run(results_dir)
    path = Path(output) if output is not None else Path(results_dir) / "report.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_report(results, timings), encoding="utf-8")
    return path
