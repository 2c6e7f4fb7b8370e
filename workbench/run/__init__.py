"""Running a spec: the runner, where PEs execute, the checkpoint, diagnostics."""
