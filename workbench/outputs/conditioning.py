"""Conditioning of an exported pyhf workspace, so standard tools fit it at their defaults.

A binned model of a ~1M-event pseudo-experiment is badly conditioned: a
staterror gamma of a bin holding 10^5 simulated background events has a
constraint of width ~1e-3, so its curvature (~1e6) dwarfs that of mu (~10), and
MINUIT's Hesse matrix at default settings is no longer positive definite
(cabinetry then reports a sigma_mu twice the MINOS one and its ranking refits do
not converge).  Such a parameter carries no information the fit can use: the
Poisson error of the bin's data, sqrt(nu), is much wider than the constraint.

:func:`condition_workspace` therefore, as pyhf and cabinetry users do by hand,

* fixes the staterror gamma of every bin whose constraint is tighter than
  ``stat_ratio`` times the data's relative Poisson error (pyhf fixes a gamma
  whose uncertainty is zero, so its entry is set to 0);
* prunes a normsys or histosys modifier whose largest effect on any bin is below
  ``effect_ratio`` times that bin's Poisson error (it cannot move the fit);
* bounds each remaining staterror gamma to ``1 +- bound_sigmas`` times its own
  constraint width.  MINUIT (through pyhf) takes its initial step sizes from the
  bounds (a thousandth of the range): with pyhf's default [1e-10, 10] a gamma of
  width 1e-3 starts with steps of 10 sigma and refits at fixed NPs stop before
  convergence; bounded to its own scale every parameter starts with comparable
  steps.  The bounds are never reached by a fit (``bound_sigmas`` = 10);
* opens a POI bounded below at 0 to ``[-high, high]``: cabinetry scans (and other
  tools step) ``mu_hat +- 3 sigma``, which leaves [0, high] for any
  pseudo-experiment less than 3 sigma from zero.  mu < 0 is unphysical but the
  model stays positive (the signal is far below the background in every bin).

With the defaults the variance a pruned term could add to a bin is below 4% (stat)
and 1e-4 (effect) of the bin's Poisson variance; the export records what it did
and the fit of the conditioned workspace next to the original one.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np


def _expected(channel: dict) -> np.ndarray:
    return np.sum([np.asarray(s["data"], dtype=float) for s in channel["samples"]], axis=0)


def condition_workspace(spec: dict[str, Any], stat_ratio: float = 0.2,
                        effect_ratio: float = 0.01, bound_sigmas: float = 10.0
                        ) -> tuple[dict[str, Any], dict[str, Any]]:
    """The conditioned copy of a workspace spec and a report of what was changed."""
    if not stat_ratio >= 0 or not effect_ratio >= 0 or not bound_sigmas > 0:
        raise ValueError("stat_ratio and effect_ratio must be >= 0, bound_sigmas > 0")
    out = copy.deepcopy(spec)
    report: dict[str, Any] = {"stat_ratio": stat_ratio, "effect_ratio": effect_ratio,
                              "bound_sigmas": bound_sigmas,
                              "staterror_bins_fixed": {}, "modifiers_pruned": [],
                              "staterror_bounds": {}}
    bounds: dict[str, list[list[float]]] = {}
    for channel in out["channels"]:
        nu = np.maximum(_expected(channel), 1e-12)
        poisson_rel = 1.0 / np.sqrt(nu)
        # staterror: one gamma per bin, shared by the samples that carry the modifier
        sq = np.zeros_like(nu)
        carriers = []
        for sample in channel["samples"]:
            for mod in sample["modifiers"]:
                if mod["type"] == "staterror":
                    sq += np.asarray(mod["data"], dtype=float) ** 2
                    carriers.append((sample, mod))
        if carriers:
            sampled = np.sum([np.asarray(s["data"], dtype=float) for s, _ in carriers], axis=0)
            rel = np.sqrt(sq) / np.maximum(sampled, 1e-12)
            tight = (rel < stat_ratio * poisson_rel) & (sq > 0)
            if tight.any():
                for _, mod in carriers:
                    mod["data"] = [0.0 if t else float(v) for t, v in zip(tight, mod["data"])]
                report["staterror_bins_fixed"][channel["name"]] = np.flatnonzero(tight).tolist()
            width = np.where(tight | (sq <= 0), 0.5 / bound_sigmas, rel)
            names = {mod["name"] for _, mod in carriers}
            for name in names:
                bounds[name] = [[float(max(1e-10, 1.0 - bound_sigmas * w)),
                                 float(1.0 + bound_sigmas * w)] for w in width]
                report["staterror_bounds"][name] = {
                    "min_width": float(np.min(width)), "max_width": float(np.max(width))}
        sigma = np.sqrt(nu)
        for sample in channel["samples"]:
            keep = []
            nominal = np.asarray(sample["data"], dtype=float)
            for mod in sample["modifiers"]:
                if mod["type"] == "normsys":
                    shift = nominal * max(abs(mod["data"]["hi"] - 1.0),
                                          abs(mod["data"]["lo"] - 1.0))
                elif mod["type"] == "histosys":
                    shift = np.maximum(
                        np.abs(np.asarray(mod["data"]["hi_data"], float) - nominal),
                        np.abs(np.asarray(mod["data"]["lo_data"], float) - nominal))
                else:
                    keep.append(mod)
                    continue
                if np.max(shift / sigma) < effect_ratio:
                    report["modifiers_pruned"].append(
                        {"channel": channel["name"], "sample": sample["name"],
                         "modifier": mod["name"], "type": mod["type"],
                         "max_effect_over_sigma": float(np.max(shift / sigma))})
                else:
                    keep.append(mod)
            sample["modifiers"] = keep
    for measurement in out["measurements"]:
        params = measurement["config"].setdefault("parameters", [])
        poi = measurement["config"]["poi"]
        entry = next((p for p in params if p["name"] == poi), None)
        poi_bounds = entry.get("bounds") if entry is not None else None
        if entry is not None and poi_bounds and poi_bounds[0][0] == 0:
            entry["bounds"] = [[-float(poi_bounds[0][1]), float(poi_bounds[0][1])]]
            report["poi_bounds"] = entry["bounds"][0]
        for name, b in bounds.items():
            entry = next((p for p in params if p["name"] == name), None)
            if entry is None:
                params.append({"name": name, "bounds": b})
            elif "bounds" not in entry:
                entry["bounds"] = b
    report["n_staterror_bins_fixed"] = sum(len(v) for v in report["staterror_bins_fixed"].values())
    return out, report


def cabinetry_config(spec: dict[str, Any], edges: dict[str, list[float]],
                     variable: str = "classifier score") -> dict[str, Any]:
    """A cabinetry configuration describing an exported workspace.

    cabinetry reads a region's bin edges and axis label from its config
    (``visualize.data_mc(..., config=...)``); the workbench builds its histograms
    itself, so the config only describes them (``InputPath`` is not used).
    """
    measurement = spec["measurements"][0]
    poi = measurement["config"]["poi"]
    samples = sorted({s["name"] for c in spec["channels"] for s in c["samples"]})
    signal = sorted({s["name"] for c in spec["channels"] for s in c["samples"]
                     if any(m["type"] == "normfactor" and m["name"] == poi
                            for m in s["modifiers"])})
    return {
        "General": {"Measurement": measurement["name"], "POI": poi,
                    "InputPath": "not-used-{SamplePath}", "HistogramFolder": "histograms/"},
        "Regions": [{"Name": c["name"], "Variable": variable,
                     "Binning": [float(x) for x in edges[c["name"]]]}
                    for c in spec["channels"] if c["name"] in edges],
        "Samples": [{"Name": "data", "Tree": "events", "Data": True}]
        + [{"Name": name, "Tree": "events"} for name in samples],
        "NormFactors": [{"Name": poi, "Samples": signal, "Nominal": 1.0,
                         "Bounds": [0.0, 10.0]}],
    }


__all__ = ["cabinetry_config", "condition_workspace"]
