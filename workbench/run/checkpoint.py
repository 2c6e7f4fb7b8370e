"""The run's checkpoint: one JSON line per finished pseudo-experiment.

The header line carries the spec digest, so a checkpoint is only ever resumed
by the experiment that wrote it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from workbench.outputs.files import json_default

CHECKPOINT = "checkpoint.jsonl"

Finished = dict[int, tuple[dict[str, Any], dict[str, Any]]]
"""Plan index -> (record, timing) of the PEs already done."""


def load_checkpoint(path: Path, digest: str) -> Finished:
    """Finished PEs of an earlier, interrupted run of the same spec."""
    done: Finished = {}
    if not path.exists():
        return done
    lines = path.read_text().splitlines()
    if not lines:
        return done
    header = json.loads(lines[0])
    if header.get("spec_digest") != digest:
        raise ValueError(
            f"{path} belongs to another spec (digest {header.get('spec_digest')} != {digest}); "
            "use another output folder or remove it"
        )
    for line in lines[1:]:
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            break  # a line cut by the interruption: that PE is simply redone
        done[int(entry["index"])] = (entry["record"], entry["timing"])
    return done


def header_line(digest: str, n: int) -> str:
    return json.dumps({"spec_digest": digest, "n": n}) + "\n"


def record_line(index: int, record: dict[str, Any], timing: dict[str, Any]) -> str:
    return json.dumps({"index": index, "record": record, "timing": timing},
                      default=json_default) + "\n"


__all__ = ["CHECKPOINT", "header_line", "load_checkpoint", "record_line"]
