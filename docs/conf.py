"""Sphinx configuration: Markdown sources (MyST), built with warnings as errors by `tox -e docs`."""

from __future__ import annotations

import tomllib
from pathlib import Path

# The version comes from pyproject.toml, so the docs build without installing the package.
_project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]
project = _project["name"]
author = "fair-workbench developers"
copyright = "fair-workbench developers"
release = version = _project["version"]

extensions = ["myst_parser"]
source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]

myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3  # links such as spec-reference.md#data resolve to headings

html_theme = "alabaster"
html_title = f"fair-workbench {release}"
html_static_path: list[str] = []
