"""Built-in interval strategies: profile likelihood, learned intervals, calibration, sideband."""
