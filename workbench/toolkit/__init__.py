"""Shared machinery for strategies, built-in or third-party.

Strategies never import each other; what several of them need lives here:
``profile`` (profile-likelihood fits of binned models, the compiled pyhf
likelihood and its interpolation codes), ``binning`` (binning, categories and
template post-processing), ``aggregate`` (the aggregated-feature cell bank of the
learned interval strategies) and ``nominal`` (the nominal NP point of a run).
"""
