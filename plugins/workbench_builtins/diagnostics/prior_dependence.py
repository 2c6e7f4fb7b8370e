"""Diagnostic "prior-dependence": how much a learned interval depends on the mu
distribution it was trained on.

A strategy that learns mu from simulated PEs (default "quantile-regression")
estimates a posterior under its training prior; its coverage is then only an
average over that prior, not a frequentist guarantee per mu.  The diagnostic
retrains the strategy under several mu priors (uniform over the range, a narrow
normal around 1, log-uniform), evaluates every variant -- and a likelihood
reference (default "profile-likelihood", which has no prior) -- on the *same*
PEs in bins of mu_true, including bins outside the training range, and reports
bias, coverage (with its binomial error) and mean width per bin: JSON tables
plus ``prior-dependence.png`` in ``ctx.output``.

Evaluation PEs (``evaluation``):
* ``"bank"`` (default, cheap, high statistics): Poisson PEs drawn from a cell
  bank of the *test pool* (independent of the training holdout, own shape-NP
  settings), the quantile-regression approximation applied to evaluation; when
  the templates have one channel the bank carries the template-bin axis too and
  the reference is fitted on the same PEs' template counts (``fit_counts``), on
  the first ``reference_pes_per_bin`` PEs of every bin (profile fits cost ~0.1 s).
* ``"events"``: real PEs drawn event by event from the test pool and fed
  through ``predict`` (exact, ~2-4 s per PE: keep ``pes_per_bin`` small).
Variants must be aggregated-feature strategies
(:class:`~workbench.plugin.protocols.AggregateInterval`: they expose ``bank`` and
``predict_features``) for ``"bank"``; any strategy works with ``"events"``.  The
reference is fitted on the bank's template counts when it is a
:class:`~workbench.plugin.protocols.CountsInterval` and the templates are
one-channel :class:`~workbench.plugin.protocols.ScoreTemplates`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from workbench import (
    AggregateInterval,
    CountsInterval,
    NuisanceParameters,
    ScoreTemplates,
    derive_seed,
    draw_nuisances,
    hookimpl,
    resolve_params,
)
from workbench.toolkit.aggregate import (
    CellBank,
    draw_weight_nps,
    process_norm_matrix,
    shape_settings,
    subsample,
)

DEFAULT_PRIORS = {
    "uniform": {"mu_prior": "uniform"},
    "normal(1,0.2)": {"mu_prior": "normal", "mu_prior_loc": 1.0, "mu_prior_scale": 0.2},
    "log-uniform": {"mu_prior": "log-uniform"},
}
DEFAULT_BINS = ((0.1, 0.5), (0.5, 1.0), (1.0, 1.5), (1.5, 2.0), (2.0, 2.5), (2.5, 3.0), (3.0, 4.0))


def bin_table(mu_true, mu_hat, lo, hi, bins) -> list[dict[str, Any]]:
    """Per mu_true bin: n, bias, rms, coverage (+ binomial error), mean width."""
    mu_true, mu_hat, lo, hi = (np.asarray(a, float) for a in (mu_true, mu_hat, lo, hi))
    rows = []
    for a, b in bins:
        m = (mu_true >= a) & (mu_true < b) if b != bins[-1][1] else (mu_true >= a) & (mu_true <= b)
        n = int(m.sum())
        if n == 0:
            rows.append({"mu_low": a, "mu_high": b, "n": 0})
            continue
        cov = float(np.mean((lo[m] <= mu_true[m]) & (mu_true[m] <= hi[m])))
        err = mu_hat[m] - mu_true[m]
        rows.append({"mu_low": a, "mu_high": b, "n": n, "bias": float(err.mean()),
                     "bias_error": float(err.std(ddof=1) / np.sqrt(n)) if n > 1 else None,
                     "rms": float(np.sqrt(np.mean(err ** 2))), "coverage": cov,
                     "coverage_error": float(np.sqrt(max(cov * (1 - cov), 0.25 / n) / n)),
                     "width": float(np.mean(hi[m] - lo[m]))})
    return rows


@dataclass
class PriorDependenceParams:
    """Parameters of the "prior-dependence" diagnostic."""

    strategy: str = "quantile-regression"
    """The learned interval strategy that is retrained under each prior."""
    strategy_params: dict[str, Any] | None = None
    """Its parameters (each prior's table is added to them)."""
    priors: dict[str, dict[str, Any]] | None = None
    """Variant name -> mu-prior parameters (default: uniform, normal(1, 0.2), log-uniform)."""
    reference: str | None = "profile-likelihood"
    """A likelihood reference evaluated on the same PEs (``None``: none)."""
    reference_params: dict[str, Any] | None = None
    """Its parameters."""
    mu_bins: tuple[tuple[float, float], ...] = DEFAULT_BINS
    """The mu_true bins [low, high] of the tables."""
    evaluation: Literal["bank", "events"] = "bank"
    """Evaluation PEs: cell-bank draws of the test pool, or real PEs event by event."""
    pes_per_bin: int = 400
    """Evaluation PEs per mu_true bin."""
    reference_pes_per_bin: int = 30
    """Of which the reference is fitted on the first ones."""
    n_settings: int = 8
    """Shape-NP settings of the evaluation bank."""
    max_events_per_process: int | None = None
    """Test-pool events per process in the evaluation bank (``None``: all)."""
    plot: bool = True
    """Write ``prior-dependence.png``."""

    def __post_init__(self) -> None:
        if self.evaluation not in ("bank", "events"):
            raise ValueError(f"evaluation {self.evaluation!r} is not 'bank' or 'events'")
        bins = [tuple(float(v) for v in b) for b in self.mu_bins]
        if any(len(b) != 2 or b[1] <= b[0] for b in bins):
            raise ValueError(f"mu_bins must be [low, high] pairs with low < high, "
                             f"got {self.mu_bins}")


class PriorDependence:
    """Retrain a strategy under several mu priors; bias/coverage/width per mu_true bin."""

    def __init__(self, params: PriorDependenceParams | None = None, /, **overrides: Any) -> None:
        p = resolve_params(PriorDependenceParams, params, overrides, "prior-dependence")
        self.params = p
        self.strategy, self.strategy_params = p.strategy, dict(p.strategy_params or {})
        self.priors = {k: dict(v) for k, v in (p.priors or DEFAULT_PRIORS).items()}
        self.reference, self.reference_params = p.reference, dict(p.reference_params or {})
        self.bins = [tuple(float(v) for v in b) for b in p.mu_bins]
        self.evaluation = p.evaluation
        self.pes_per_bin, self.reference_pes_per_bin = int(p.pes_per_bin), int(p.reference_pes_per_bin)
        self.n_settings, self.max_events = int(p.n_settings), p.max_events_per_process
        self.plot = p.plot

    def run(self, ctx) -> dict[str, Any]:
        p = ctx.pipeline
        data, clf, templates = p.data, p.classifier, p.templates
        t0 = time.perf_counter()
        variants = {}
        for name, prior in self.priors.items():
            s = ctx.registry.create("interval", self.strategy, {**self.strategy_params, **prior})
            s.fit(data, clf, templates)
            variants[name] = s
        ref = None
        if self.reference:
            if self.reference == "profile-likelihood" and templates is None:
                ref = None
            else:
                ref = ctx.registry.create("interval", self.reference, self.reference_params)
                ref.fit(data, clf, templates)
        t_fit = time.perf_counter() - t0
        rng = np.random.default_rng(ctx.seed)
        mu_true = np.concatenate([rng.uniform(a, b, self.pes_per_bin) for a, b in self.bins])
        if self.evaluation == "bank":
            results, ref_results = self._bank(ctx, variants, ref, mu_true, rng)
        else:
            results, ref_results = self._events(ctx, variants, ref, mu_true)
        report: dict[str, Any] = {
            "strategy": self.strategy, "strategy_params": self.strategy_params,
            "evaluation": self.evaluation, "training_range": list(data.mu_range),
            "priors": self.priors, "bins": [list(b) for b in self.bins],
            "variants": {name: {"bins": bin_table(mu_true, *r, self.bins),
                                "mu_prior": _mu_prior(variants[name])}
                         for name, r in results.items()},
            "seconds": {"training": t_fit, "total": time.perf_counter() - t0},
        }
        if ref_results is not None:
            idx, r = ref_results
            report["reference"] = {"name": self.reference, "n": int(len(idx)),
                                   "bins": bin_table(mu_true[idx], *r, self.bins)}
        report["summary"] = self._summary(report)
        if self.plot:
            report["plot"] = self._plot(report, Path(ctx.output))
        return report

    # -- evaluation ------------------------------------------------------------------------
    def _bank(self, ctx, variants, ref, mu_true, rng):
        first = next(iter(variants.values()))
        if not isinstance(first, AggregateInterval) or first.bank is None:
            raise ValueError(f"prior-dependence: evaluation='bank' needs an aggregated-feature "
                             f"strategy, {self.strategy!r} is not; use evaluation='events'")
        definition = first.bank.definition
        data, tpl = ctx.pipeline.data, ctx.pipeline.templates
        with_ref = (isinstance(ref, CountsInterval) and isinstance(tpl, ScoreTemplates)
                    and len(tpl.channels) == 1)
        n_def = sum(definition.nbins)

        def axes(scores, events):
            idx, nb = definition.indices(scores, events), list(definition.nbins)
            if with_ref:
                e = np.asarray(tpl.edges, float)
                s = np.clip(np.asarray(scores, float), e[0], np.nextafter(e[-1], e[0]))
                idx.append(np.searchsorted(e[1:-1], s, side="right"))
                nb.append(len(e) - 1)
            return idx, nb

        seed = derive_seed(ctx.seed, "evaluation-bank")
        pool = subsample(ctx.pipeline.pool, self.max_events, seed)
        settings = shape_settings(data, self.n_settings, derive_seed(seed, "settings"))
        bank = CellBank.build(data, pool, ctx.pipeline.classifier, settings, axes,
                              derive_seed(seed, "smear"))
        norms = process_norm_matrix(mu_true, draw_weight_nps(data, len(mu_true), rng))
        marg = bank.simulate(norms, rng.integers(0, len(bank.settings), len(mu_true)), rng)
        X = definition.transform(marg[:, :n_def])
        results = {name: v.predict_features(X)[:3] for name, v in variants.items()}
        ref_results = None
        if with_ref:
            idx = np.concatenate([np.arange(k * self.pes_per_bin,
                                            k * self.pes_per_bin + min(self.reference_pes_per_bin,
                                                                       self.pes_per_bin))
                                  for k in range(len(self.bins))])
            rs = [ref.fit_counts(marg[i, n_def:].astype(float)) for i in idx]
            ref_results = (idx, (np.array([r.mu_hat for r in rs]), np.array([r.mu16 for r in rs]),
                                 np.array([r.mu84 for r in rs])))
        elif ref is not None:
            ref_results = self._events(ctx, {}, ref, mu_true, only_reference=True)[1]
        return results, ref_results

    def _events(self, ctx, variants, ref, mu_true, only_reference=False):
        from workbench.pseudo_experiments import sample_pseudo_experiment

        data = ctx.pipeline.data
        n_ref = min(self.reference_pes_per_bin, self.pes_per_bin)
        idx = np.arange(len(mu_true)) if not only_reference else np.concatenate(
            [np.arange(k * self.pes_per_bin, k * self.pes_per_bin + n_ref)
             for k in range(len(self.bins))])
        out = {name: [] for name in variants}
        ref_out = []
        for i in idx:
            seed = derive_seed(ctx.seed, "pe", int(i))
            nps = draw_nuisances(np.random.RandomState(seed), data.randomised, data.priors)
            nps = NuisanceParameters(**{n: (v if n in data.randomised else getattr(data.fixed, n))
                                        for n, v in nps.as_dict().items()})
            pe = sample_pseudo_experiment(ctx.pipeline.pool, float(mu_true[i]), nps, seed)
            pe = pe.without_truth()
            X = None
            for name, v in variants.items():
                if isinstance(v, AggregateInterval) and v.bank is not None:
                    X = v.features(pe) if X is None else X  # all variants share one bank
                    out[name].append([a[0] for a in v.predict_features(X)[:3]])
                else:
                    r = v.predict(pe)
                    out[name].append([r.mu_hat, r.mu16, r.mu84])
            if ref is not None and (only_reference or (i % self.pes_per_bin) < n_ref):
                r = ref.predict(pe)
                ref_out.append((i, [r.mu_hat, r.mu16, r.mu84]))
        results = {name: tuple(np.array(o).T) for name, o in out.items()}
        ref_results = None
        if ref_out:
            ridx = np.array([i for i, _ in ref_out])
            ref_results = (ridx, tuple(np.array([r for _, r in ref_out]).T))
        return results, ref_results

    # -- summary and plot ----------------------------------------------------------------------
    def _summary(self, report) -> dict[str, Any]:
        """Per variant: the largest |bias| and coverage deviation inside / outside the training range."""
        lo, hi = report["training_range"]
        out = {}
        rows = {f"variant:{k}": v["bins"] for k, v in report["variants"].items()}
        if "reference" in report:
            rows[f"reference:{report['reference']['name']}"] = report["reference"]["bins"]
        for name, bins in rows.items():
            d = {}
            for where, sel in (("inside", lambda b: b["mu_high"] <= hi + 1e-9),
                               ("outside", lambda b: b["mu_high"] > hi + 1e-9)):
                bs = [b for b in bins if sel(b) and b["n"]]
                if bs:
                    d[where] = {"max_abs_bias": max(abs(b["bias"]) for b in bs),
                                "coverage_min": min(b["coverage"] for b in bs),
                                "coverage_max": max(b["coverage"] for b in bs)}
            out[name] = d
        return out

    def _plot(self, report, outdir: Path) -> str | None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        outdir.mkdir(parents=True, exist_ok=True)
        fig, axes = plt.subplots(1, 3, figsize=(14, 4))
        series = {k: v["bins"] for k, v in report["variants"].items()}
        if "reference" in report:
            series[f"{report['reference']['name']} (reference)"] = report["reference"]["bins"]
        for name, bins in series.items():
            bs = [b for b in bins if b["n"]]
            x = [0.5 * (b["mu_low"] + b["mu_high"]) for b in bs]
            axes[0].errorbar(x, [b["bias"] for b in bs], yerr=[b["bias_error"] or 0 for b in bs],
                             marker="o", label=name, capsize=2)
            axes[1].errorbar(x, [b["coverage"] for b in bs],
                             yerr=[b["coverage_error"] for b in bs], marker="o", label=name,
                             capsize=2)
            axes[2].plot(x, [b["width"] for b in bs], marker="o", label=name)
        hi = report["training_range"][1]
        for ax, lab in zip(axes, ("bias of mu_hat", "coverage", "mean width")):
            ax.axvspan(hi, max(b[1] for b in report["bins"]), color="0.9", zorder=0)
            ax.set_xlabel("mu_true")
            ax.set_ylabel(lab)
        axes[0].axhline(0, color="k", lw=0.8)
        axes[1].axhline(0.6827, color="k", lw=0.8)
        axes[1].legend(fontsize=7)
        fig.suptitle(f"prior dependence of {report['strategy']} "
                     f"(grey: outside the training range; evaluation: {report['evaluation']})")
        fig.tight_layout()
        path = outdir / "prior-dependence.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return str(path)


def _mu_prior(strategy) -> dict[str, Any] | None:
    """The training prior of an aggregated-feature strategy (``None`` for others)."""
    if isinstance(strategy, AggregateInterval) and strategy.mu_prior is not None:
        return strategy.mu_prior.as_dict()
    return None


@hookimpl
def register_diagnostics(register):
    register("prior-dependence", PriorDependence, params=PriorDependenceParams)
