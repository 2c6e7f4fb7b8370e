"""Plots of a binned template model: stacked templates with data, systematic
shapes, NP pulls/constraints and the NP correlation matrix (matplotlib + mplhep).

Written by :func:`workbench.outputs.workspace.export_workspace` (``plots=True``) next to the
workspace; every function takes the pyhf workspace dict, so exported files can
be plotted without the workbench's training.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from workbench.plugin.protocols import EdgedTemplates


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mplhep

    plt.style.use(mplhep.style.ATLAS)
    return plt, mplhep


def _samples(workspace: dict, channel: str) -> dict[str, dict]:
    ch = next(c for c in workspace["channels"] if c["name"] == channel)
    return {s["name"]: s for s in ch["samples"]}


def _observed(workspace: dict, channel: str) -> np.ndarray:
    return np.asarray(next(o["data"] for o in workspace["observations"] if o["name"] == channel))


def plot_stack(workspace: dict, channel: str, edges, path: Path) -> Path:
    """Pre-fit stacked templates (mu = 1) and the observed counts, with a data/model ratio."""
    plt, hep = _pyplot()
    samples = _samples(workspace, channel)
    order = sorted(samples, key=lambda s: np.sum(samples[s]["data"]), reverse=True)
    edges = np.asarray(edges) if edges is not None else np.arange(
        len(samples[order[0]]["data"]) + 1, dtype=float)
    data = _observed(workspace, channel)
    total = np.sum([samples[s]["data"] for s in order], axis=0)
    fig, (ax, rax) = plt.subplots(2, 1, figsize=(8, 7), sharex=True,
                                  gridspec_kw={"height_ratios": [3, 1]})
    hep.histplot([np.asarray(samples[s]["data"]) for s in order[::-1]], edges, stack=True,
                 histtype="fill", label=order[::-1], ax=ax)
    centres = 0.5 * (edges[1:] + edges[:-1])
    ax.errorbar(centres, data, yerr=np.sqrt(np.maximum(data, 0)), fmt="ko", label="observed")
    ax.set_yscale("log")
    ax.set_ylabel("events / bin")
    ax.legend(fontsize="small")
    ax.set_title(f"channel {channel}", fontsize="small")
    rax.errorbar(centres, data / total, yerr=np.sqrt(np.maximum(data, 0)) / total, fmt="ko")
    rax.axhline(1.0, color="grey", lw=1)
    rax.set_ylabel("obs / model")
    rax.set_xlabel("classifier score")
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_systematics(workspace: dict, channel: str, edges, path: Path) -> Path:
    """Up/down / nominal of every histosys (and normsys factor) per sample."""
    plt, hep = _pyplot()
    samples = _samples(workspace, channel)
    edges = np.asarray(edges) if edges is not None else None
    nps = sorted({m["name"] for s in samples.values() for m in s["modifiers"]
                  if m["type"] in ("histosys", "normsys")})
    if not nps:
        return path
    fig, axes = plt.subplots(len(nps), 1, figsize=(8, 2.6 * len(nps)), sharex=True,
                             squeeze=False)
    for ax, name in zip(axes[:, 0], nps):
        for i, (sname, s) in enumerate(samples.items()):
            nom = np.asarray(s["data"], dtype=float)
            e = edges if edges is not None else np.arange(len(nom) + 1, dtype=float)
            up, dn = np.ones_like(nom), np.ones_like(nom)
            for m in s["modifiers"]:
                if m["name"] != name:
                    continue
                if m["type"] == "histosys":
                    up = up * np.asarray(m["data"]["hi_data"]) / nom
                    dn = dn * np.asarray(m["data"]["lo_data"]) / nom
                else:
                    up, dn = up * m["data"]["hi"], dn * m["data"]["lo"]
            colour = f"C{i}"
            hep.histplot(up, e, ax=ax, color=colour, label=f"{sname} up")
            hep.histplot(dn, e, ax=ax, color=colour, ls="--", label=f"{sname} down")
        ax.axhline(1.0, color="grey", lw=0.8)
        ax.set_ylabel(f"{name} / nom")
        ax.legend(fontsize="x-small", ncol=4)
    axes[-1, 0].set_xlabel("classifier score")
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_pulls(nuisances: dict[str, float], errors: dict[str, float], path: Path) -> Path:
    """Post-fit NP values and Hesse errors in prior units (band: the +-1 constraint)."""
    plt, _ = _pyplot()
    names = sorted(nuisances)
    y = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(7, 0.5 * len(names) + 1.5))
    ax.axvspan(-2, 2, color="yellow", alpha=0.5)
    ax.axvspan(-1, 1, color="limegreen", alpha=0.5)
    ax.errorbar([nuisances[n] for n in names], y, xerr=[errors.get(n, 0.0) for n in names],
                fmt="ko")
    ax.set_yticks(y, names)
    ax.set_xlim(-3, 3)
    ax.set_xlabel(r"$(\hat\theta - \theta_0)/\Delta\theta$ (pull and constraint)")
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return path


def fit_correlations(workspace: dict) -> tuple[list[str], np.ndarray]:
    """Correlation matrix of the scalar parameters from a pyhf/Minuit fit."""
    import pyhf

    pyhf.set_backend("numpy", "minuit")
    try:
        ws = pyhf.Workspace(workspace)
        model = ws.model()
        _, corr = pyhf.infer.mle.fit(ws.data(model), model, return_correlations=True)
    finally:
        pyhf.set_backend("numpy", "scipy")
    cfg = model.config
    idx, names = [], []
    for name in cfg.par_order:
        sl = cfg.par_slice(name)
        if sl.stop - sl.start == 1:
            idx.append(sl.start)
            names.append(name)
    corr = np.asarray(corr)[np.ix_(idx, idx)]
    return names, corr


def plot_correlations(names: list[str], corr: np.ndarray, path: Path) -> Path:
    plt, _ = _pyplot()
    fig, ax = plt.subplots(figsize=(0.7 * len(names) + 2, 0.7 * len(names) + 1.5))
    im = ax.imshow(corr, vmin=-1, vmax=1, cmap="RdBu_r")
    ax.set_xticks(range(len(names)), names, rotation=90)
    ax.set_yticks(range(len(names)), names)
    for i in range(len(names)):
        for j in range(len(names)):
            ax.text(j, i, f"{corr[i, j]:.2f}", ha="center", va="center", fontsize=7)
    fig.colorbar(im, ax=ax)
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_templates(templates, workspace: dict, outdir: str | Path, prefix: str = "workspace",
                   fit: dict[str, Any] | None = None) -> list[Path]:
    """All plots of one exported workspace; returns the files written."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    written = []
    known = templates.bin_edges() if isinstance(templates, EdgedTemplates) else {}
    for c in workspace["channels"]:
        name = c["name"]
        edges = known.get(name)
        written.append(plot_stack(workspace, name, edges, outdir / f"{prefix}_{name}_stack.png"))
        p = plot_systematics(workspace, name, edges, outdir / f"{prefix}_{name}_systematics.png")
        if p.exists():
            written.append(p)
    if fit is not None and fit.get("nuisances"):
        written.append(plot_pulls(fit["nuisances"], fit.get("nuisance_errors", {}),
                                  outdir / f"{prefix}_pulls.png"))
    names, corr = fit_correlations(workspace)
    written.append(plot_correlations(names, corr, outdir / f"{prefix}_correlations.png"))
    return written


__all__ = ["fit_correlations", "plot_correlations", "plot_pulls", "plot_stack",
           "plot_systematics", "plot_templates"]
