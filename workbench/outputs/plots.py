"""Run plots with mplhep: coverage vs mu, mu_hat vs mu_true, NP pulls."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mplhep

    plt.style.use(mplhep.style.ATLAS)
    return plt


def coverage_by_mu(records: list[dict[str, Any]], bins: int = 6, mu_range=None,
                   interval_cl: float = 0.6827):
    """Binned coverage: (edges, coverage, interval, counts).

    ``interval`` is the Clopper-Pearson (exact binomial) ``interval_cl`` interval of each
    bin's coverage, shape (2, bins) -- not Wald's ``sqrt(c (1 - c) / n)``, which
    collapses to zero when every or no PE of a bin covers.
    """
    from hist.intervals import clopper_pearson_interval

    mu = np.array([r["mu_true"] for r in records])
    covered = np.array([r["covered"] for r in records], dtype=float)
    lo, hi = mu_range or (mu.min(), mu.max())
    edges = np.linspace(lo, hi + 1e-9, bins + 1)
    idx = np.clip(np.digitize(mu, edges) - 1, 0, bins - 1)
    n = np.bincount(idx, minlength=bins).astype(float)
    k = np.bincount(idx, weights=covered, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        c = np.where(n > 0, k / n, np.nan)
    interval = np.full((2, bins), np.nan)
    has = n > 0
    if has.any():
        interval[:, has] = clopper_pearson_interval(k[has], n[has], coverage=interval_cl)
    return edges, c, interval, n


def plot_run(records: list[dict[str, Any]], outdir: str | Path, confidence_level: float = 0.6827):
    """Write coverage.png, mu_hat.png and pulls.png for the successful PEs."""
    plt = _pyplot()
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    ok = [r for r in records if "error" not in r]
    paths = {}

    edges, c, interval, _ = coverage_by_mu(ok)
    fig, ax = plt.subplots(figsize=(7, 5))
    centres = 0.5 * (edges[1:] + edges[:-1])
    ax.errorbar(centres, c, yerr=np.abs(interval - c), xerr=np.diff(edges) / 2, fmt="o",
                label="coverage (Clopper-Pearson 68%)")
    n = len(ok)
    s68 = np.sqrt(confidence_level * (1 - confidence_level) / n)
    ax.axhspan(confidence_level - 2 * s68, confidence_level + 2 * s68, alpha=0.2,
               color="tab:green", label=r"$0.6827 \pm 2\sigma_{68}$ (pooled)")
    ax.axhline(confidence_level, color="k", ls="--")
    ax.set_xlabel(r"$\mu_{true}$")
    ax.set_ylabel("coverage")
    ax.set_ylim(0, 1.05)
    ax.legend(loc="lower right")
    paths["coverage"] = outdir / "coverage.png"
    fig.savefig(paths["coverage"], dpi=100, bbox_inches="tight")
    plt.close(fig)

    mu = np.array([r["mu_true"] for r in ok])
    mu_hat = np.array([r["mu_hat"] for r in ok])
    lo = np.array([r["mu16"] for r in ok])
    hi = np.array([r["mu84"] for r in ok])
    fig, ax = plt.subplots(figsize=(7, 5))
    ax.errorbar(mu, mu_hat, yerr=[mu_hat - lo, hi - mu_hat], fmt=".", alpha=0.6,
                label=r"$\hat\mu$ with 68.27% interval")
    span = [min(mu.min(), lo.min()), max(mu.max(), hi.max())]
    ax.plot(span, span, "k--", label=r"$\hat\mu = \mu_{true}$")
    ax.set_xlabel(r"$\mu_{true}$")
    ax.set_ylabel(r"$\hat\mu$")
    ax.legend(loc="upper left")
    paths["mu_hat"] = outdir / "mu_hat.png"
    fig.savefig(paths["mu_hat"], dpi=100, bbox_inches="tight")
    plt.close(fig)

    names = sorted({k for r in ok for k in r.get("nuisances_fit", {})})
    if names:
        fig, ax = plt.subplots(figsize=(7, 0.6 * len(names) + 2))
        for i, name in enumerate(names):
            vals = np.array([r["nuisances_fit"].get(name, np.nan) for r in ok], float)
            errs = np.array([r.get("nuisance_errors", {}).get(name, np.nan) for r in ok], float)
            ax.errorbar(np.nanmean(vals), i, xerr=np.nanmean(errs), fmt="o", color="k")
            ax.plot(vals, np.full_like(vals, i), "|", alpha=0.3, color="tab:blue")
        ax.axvspan(-1, 1, color="tab:green", alpha=0.2)
        ax.axvline(0, color="k", ls="--")
        ax.set_yticks(range(len(names)), names)
        ax.set_xlabel(r"fitted $\theta$ (mean, mean error; ticks: each PE)")
        paths["pulls"] = outdir / "pulls.png"
        fig.savefig(paths["pulls"], dpi=100, bbox_inches="tight")
        plt.close(fig)
    return paths
