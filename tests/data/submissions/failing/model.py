"""Fails on purpose, as the FAIL_MODE environment variable says (read at import):

raise      predict raises on every other call (a ZeroDivisionError)
fit        fit raises
missing    the answer has no p84
string     p16 is a string
nan        p16 is NaN
inverted   p16 > p84
unpicklable  the fitted model holds a lock (does not pickle)
"""

import os
import threading

import analysis

FAIL_MODE = os.environ.get("FAIL_MODE", "raise")


class Model:
    def __init__(self, get_train_set=None, systematics=None):
        self.calls = 0
        self.name = analysis.NAME

    def fit(self):
        if FAIL_MODE == "fit":
            raise RuntimeError("fit failed on purpose")
        if FAIL_MODE == "unpicklable":
            self.lock = threading.Lock()

    def predict(self, test_set):
        self.calls += 1
        n = len(test_set["data"])
        answer = {"mu_hat": 1.0, "delta_mu_hat": 0.2, "p16": 0.9, "p84": 1.1, "n": n}
        if FAIL_MODE == "raise" and n % 2 == 0:
            return {"mu_hat": 1 / 0}
        if FAIL_MODE == "missing":
            del answer["p84"]
        elif FAIL_MODE == "string":
            answer["p16"] = "low"
        elif FAIL_MODE == "nan":
            answer["p16"] = float("nan")
        elif FAIL_MODE == "inverted":
            answer["p16"], answer["p84"] = 1.1, 0.9
        print(f"failing: call {self.calls}, mode {FAIL_MODE}")
        return answer
