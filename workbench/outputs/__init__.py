"""What a run leaves behind: result files, plots, the HTML report, pyhf workspaces."""
