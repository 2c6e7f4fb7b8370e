"""A counting experiment: N ~ Poisson(mu S + B); mu_hat = (N - B) / S +- sqrt(N) / S."""

import sys

import numpy as np


class Model:
    def __init__(self, get_train_set=None, systematics=None):
        self.get_train_set = get_train_set
        self.systematics = systematics
        print("counting: constructed")

    def fit(self):
        train = self.get_train_set()
        nominal = self.systematics(train)  # thresholds and DER_ features, as the baseline does
        w, y = nominal["weights"].to_numpy(), nominal["labels"].to_numpy()
        self.s = float(w[y == 1].sum())
        self.b = float(w[y == 0].sum())
        print(f"counting: S={self.s:.1f} B={self.b:.1f}")
        print("counting: a line on stderr", file=sys.stderr)

    def predict(self, test_set):
        n = float(np.sum(test_set["weights"]))
        mu_hat = (n - self.b) / self.s
        half = np.sqrt(n) / self.s
        print(f"counting: N={n:.0f} mu_hat={mu_hat:.3f}")
        return {"mu_hat": mu_hat, "delta_mu_hat": 2 * half, "p16": mu_hat - half,
                "p84": mu_hat + half, "n_events": int(n), "columns": list(test_set["data"].columns)}
