"""The run's checkpoint: one JSON line per finished pseudo-experiment.

The header line carries the digest of what decides the records
(:func:`workbench.spec.resume_digest`), so a checkpoint is only ever resumed by
the experiment that wrote it.  A line is one complete record or nothing: a
line cut by a kill, or garbage after it, is dropped when the checkpoint is
opened for resumption (the file is rewritten, atomically, with the header and
every complete record), so later appends never land after a broken line.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import IO, Any

from workbench.errors import CheckpointError
from workbench.outputs.files import json_default

CHECKPOINT = "checkpoint.jsonl"
FORMAT = 2

Finished = dict[int, tuple[dict[str, Any], dict[str, Any]]]
"""Plan index -> (record, timing) of the PEs already done."""

_FIX = "start again with --overwrite (or use another output folder)"


def _read_header(path: Path, lines: list[bytes]) -> dict[str, Any]:
    try:
        header = json.loads(lines[0])
        if not isinstance(header, dict) or not lines[0].endswith(b"\n"):
            raise ValueError("not a complete JSON object")
    except (ValueError, UnicodeDecodeError) as exc:
        raise CheckpointError(
            f"{path}: the header line is corrupt ({exc}), so it is not known which "
            f"experiment wrote it; {_FIX}"
        ) from None
    return header


def read_checkpoint(path: Path) -> tuple[dict[str, Any] | None, Finished, int]:
    """(header or None if empty, complete records, number of broken lines dropped)."""
    data = path.read_bytes()
    if not data.strip():
        return None, {}, 0
    lines = data.splitlines(keepends=True)
    header = _read_header(path, lines)
    n = header.get("n")
    done: Finished = {}
    broken = 0
    for line in lines[1:]:
        try:
            if not line.endswith(b"\n"):
                raise ValueError("cut line")
            entry = json.loads(line)
            index = int(entry["index"])
            record, timing = entry["record"], entry["timing"]
            if not (isinstance(record, dict) and isinstance(timing, dict)):
                raise ValueError("not a record")
            if isinstance(n, int) and not 0 <= index < n:
                raise ValueError("index out of range")
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            broken += 1
            continue
        done[index] = (record, timing)
    return header, done, broken


def load_checkpoint(path: Path, digest: str, spec_digest: str | None = None) -> Finished:
    """Finished PEs of an earlier, interrupted run of the same experiment.

    ``digest`` is the resume digest; a checkpoint written before it existed
    (header with ``spec_digest`` only) is matched on ``spec_digest`` instead.
    """
    if not path.exists():
        return {}
    header, done, _ = read_checkpoint(path)
    if header is None:
        return {}
    ours: str | None
    if "resume_digest" in header:
        theirs, ours = header.get("resume_digest"), digest
    else:  # format 1
        theirs, ours = header.get("spec_digest"), spec_digest
    if theirs != ours:
        raise CheckpointError(
            f"{path} belongs to another spec (digest {theirs} != {ours}): resume it with the "
            f"spec that wrote it, or {_FIX}"
        )
    return done


def header_line(digest: str, n: int, spec_digest: str | None = None) -> str:
    header: dict[str, Any] = {"format": FORMAT, "resume_digest": digest, "n": n}
    if spec_digest is not None:
        header["spec_digest"] = spec_digest
    return json.dumps(header) + "\n"


def record_line(index: int, record: dict[str, Any], timing: dict[str, Any]) -> str:
    return json.dumps({"index": index, "record": record, "timing": timing},
                      default=json_default) + "\n"


def write_checkpoint(path: Path, header: str, done: Finished) -> None:
    """The header and ``done`` as a fresh checkpoint, atomically (temp file + rename)."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as f:
        f.write(header)
        for index in sorted(done):
            record, timing = done[index]
            f.write(record_line(index, record, timing))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def open_for_append(path: Path, header: str, done: Finished) -> IO[str]:
    """Rewrite the checkpoint clean (header + complete records), then open it to append."""
    write_checkpoint(path, header, done)
    return open(path, "a")


__all__ = [
    "CHECKPOINT",
    "Finished",
    "header_line",
    "load_checkpoint",
    "open_for_append",
    "read_checkpoint",
    "record_line",
    "write_checkpoint",
]
