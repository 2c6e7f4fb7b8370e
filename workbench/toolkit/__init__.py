"""Shared machinery for strategies, built-in or third-party.

Strategies never import each other; what several of them need lives here:
``profile`` (profile-likelihood fits of binned models, the compiled pyhf
likelihood and its interpolation codes), ``nominal`` (the nominal NP point of a
run and the alpha <-> NP conversions), ``binning`` (categories, bin edges and
smoothing), ``templates`` (the HistFactory template builder and the binned
templates it builds, for "pyhf" and "polynomial") and ``aggregate`` (the
aggregated-feature cell bank, the quantile regressor and the shared plumbing of
the learned interval strategies).
"""
