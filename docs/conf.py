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

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]

myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3  # links such as spec-reference.md#data resolve to headings

# API reference: autosummary writes one page per documented object (docs/api/generated)
autosummary_generate = True
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_class_signature = "separated"
napoleon_google_docstring = False
napoleon_numpy_docstring = True
# heavy or optional imports are not needed to read the signatures
autodoc_mock_imports = ["dask", "distributed"]

html_theme = "furo"
html_title = f"fair-workbench {release}"
html_static_path: list[str] = []
