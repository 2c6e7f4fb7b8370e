"""docs/cli.md is rendered from the argparse parser (docs/cli_reference.py): it must match."""

from __future__ import annotations

import importlib.util
from pathlib import Path

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _renderer():
    spec = importlib.util.spec_from_file_location("cli_reference", DOCS / "cli_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_docs_cli_md_matches_the_parser():
    rendered = _renderer().render()
    assert (DOCS / "cli.md").read_text() == rendered, (
        "docs/cli.md is out of date: run python docs/cli_reference.py --write")


def test_every_option_of_every_command_is_documented():
    from workbench.cli import build_parser

    text = (DOCS / "cli.md").read_text()
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, command in sub.choices.items():
        assert f"## workbench {name}" in text
        for action in command._actions:
            for flag in action.option_strings:
                if flag not in ("-h", "--help"):
                    assert f"`{flag}" in text, f"workbench {name} {flag}"
