"""Faults a run must survive with nothing lost: SIGKILL at random points with every
executor (then --resume gives the uninterrupted run's results.json byte for byte, and
no process is left behind), a dask cluster that loses its workers, a scheduler out of
reach, two runs into one folder, a cut checkpoint line, the training cache."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from run_toys import SlowCounting, spec_dict, toy_registry, write_spec
from toys import Counting

from workbench.errors import CheckpointError, ExecutorError, RunFolderError
from workbench.run.checkpoint import CHECKPOINT
from workbench.run.folder import TRAINING_CACHE, RunLock
from workbench.run.runner import run
from workbench.spec import load_spec, parse_spec

DRIVER = Path(__file__).with_name("run_toys.py")
SLOW = {"name": "slow-counting", "params": {"delay": 0.15}}
TRIALS, PER_TRIAL = 3, 4
N = TRIALS * PER_TRIAL


@pytest.fixture(scope="module")
def registry():
    return toy_registry()


@pytest.fixture(scope="module")
def reference(tmp_path_factory, registry):
    """results.json of the uninterrupted run of the fault tests' spec."""
    folder = tmp_path_factory.mktemp("reference")
    spec = write_spec(folder / "spec.toml",
                      spec_dict(folder / "out", TRIALS, PER_TRIAL, interval=SLOW))
    run(load_spec(spec), registry)
    return spec, (folder / "out" / "results.json").read_bytes()


def _records(folder: Path) -> int:
    path = folder / CHECKPOINT
    if not path.exists():
        return -1
    return path.read_bytes().count(b"\n") - 1  # complete lines after the header


def _drive(spec: Path, out: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(DRIVER), "run", str(spec), "-o", str(out),
                             "--no-progress", "-q", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _kill_when(proc: subprocess.Popen, out: Path, records: int, timeout: float = 120) -> None:
    """SIGKILL ``proc`` once the checkpoint holds ``records`` PEs (0: during training);
    then every process it started must be gone within a few seconds."""
    t0 = time.monotonic()
    while _records(out) < records:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() - t0 < timeout
        time.sleep(0.01)
    parent = psutil.Process(proc.pid)
    children = parent.children(recursive=True)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    gone, alive = psutil.wait_procs(children, timeout=10)
    leftovers = [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    for p in leftovers:
        p.kill()
    assert not leftovers, f"processes left behind after SIGKILL: {leftovers}"


@pytest.mark.parametrize("executor", ["inline", "processes", "dask"])
def test_sigkill_at_random_points_then_resume_is_byte_identical(tmp_path, reference, executor):
    if executor == "dask":
        pytest.importorskip("distributed")
    spec, expected = reference
    out = tmp_path / "out"
    rng = random.Random(f"kill-{executor}")
    points = [rng.randint(1, N - 3)]
    if executor == "inline":
        points.insert(0, 0)  # also once during training
    args = ("--executor", executor, "--workers", "2")
    _kill_when(_drive(spec, out, *args), out, points[0])
    for point in points[1:]:
        _kill_when(_drive(spec, out, "--resume", *args), out, point)
    done = _records(out)
    proc = _drive(spec, out, "--resume", *args)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert (out / "results.json").read_bytes() == expected
    timings = json.loads((out / "timings.json").read_text())
    assert timings["resumed_pes"] == done > 0
    assert timings["training_cached"] is True  # the resumed run did not train again


def test_dask_survives_losing_all_its_workers(tmp_path, reference, registry):
    pytest.importorskip("distributed")
    spec_path, expected = reference
    marker = tmp_path / "died"
    raw = spec_dict(tmp_path / "out", TRIALS, PER_TRIAL,
                    interval={"name": "slow-counting",
                              "params": {"delay": 0.15, "die_once": str(marker)}})
    # the same experiment: only the interval's fault switch differs, so compare the records
    result = run(parse_spec(raw), registry, executor="dask", workers=1)
    assert marker.exists()  # the only worker did die
    ref = json.loads(expected)
    assert result.records == ref["pseudo_experiments"]
    assert result.summary["complete"] is True


def test_unreachable_scheduler_fails_before_training(tmp_path, registry):
    pytest.importorskip("distributed")
    SlowCounting.fits = 0
    spec = parse_spec(spec_dict(tmp_path, 1, 2, interval=SLOW))
    t0 = time.monotonic()
    with pytest.raises(ExecutorError, match=r"cannot reach the dask scheduler tcp://127\.0\.0"
                                            r"\.1:9 \(gave up after \d+ s"):
        run(spec, registry, executor="dask", scheduler="tcp://127.0.0.1:9", connect_timeout=1.0)
    assert time.monotonic() - t0 < 10
    assert SlowCounting.fits == 0  # nothing was trained


def test_scheduler_without_dask_is_an_error(tmp_path, registry):
    spec = parse_spec(spec_dict(tmp_path, 1, 2))
    with pytest.raises(ExecutorError, match="needs the dask executor, but the executor is "
                                            "'processes'"):
        run(spec, registry, executor="processes", scheduler="tcp://h:8786")


def test_a_second_run_into_a_locked_folder_fails_at_once(tmp_path, registry):
    spec = parse_spec(spec_dict(tmp_path, 1, 2))
    with RunLock(tmp_path):
        with pytest.raises(RunFolderError, match=rf"in use by another workbench run \(pid "
                                                 rf"{os.getpid()}\)"):
            run(spec, registry)
    assert not (tmp_path / "results.json").exists()
    run(spec, registry)  # the lock went with its holder


def test_lock_is_released_when_its_process_is_killed(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from workbench.run.folder import RunLock; "
        f"lock = RunLock({str(tmp_path)!r}).acquire(); print('locked', flush=True); time.sleep(60)")],
        stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    with pytest.raises(RunFolderError, match=f"pid {proc.pid}"):
        RunLock(tmp_path).acquire()
    proc.kill()
    proc.wait()
    RunLock(tmp_path).acquire().release()


def test_interrupted_folder_needs_resume_or_overwrite(tmp_path, registry, monkeypatch):
    spec = parse_spec(spec_dict(tmp_path, 2, 3))
    monkeypatch.setattr(Counting, "interrupt_after", 4)
    with pytest.raises(KeyboardInterrupt):
        run(spec, registry)
    monkeypatch.setattr(Counting, "interrupt_after", -1)
    before = (tmp_path / CHECKPOINT).read_bytes()
    with pytest.raises(RunFolderError, match="holds 3 finished pseudo-experiments of an "
                                             "earlier run"):
        run(spec, registry)
    assert (tmp_path / CHECKPOINT).read_bytes() == before  # nothing discarded
    result = run(spec, registry, overwrite=True)
    assert result.timings["resumed_pes"] == 0 and result.summary["complete"]
    with pytest.raises(RunFolderError, match="holds a complete earlier run"):
        run(spec, registry)


def test_cut_and_corrupt_checkpoint_lines_are_dropped_and_every_record_reused(
        tmp_path, registry, monkeypatch):
    ref = tmp_path / "ref"
    run(parse_spec(spec_dict(ref, 3, 3)), registry)
    cut = tmp_path / "cut"
    spec = parse_spec(spec_dict(cut, 3, 3))
    monkeypatch.setattr(Counting, "interrupt_after", 6)
    with pytest.raises(KeyboardInterrupt):
        run(spec, registry)
    monkeypatch.setattr(Counting, "interrupt_after", -1)
    path = cut / CHECKPOINT
    header, *lines = path.read_bytes().splitlines(keepends=True)
    assert len(lines) == 5
    # the state the old appender left: a cut line with the next record glued to it,
    # more records after it, and a cut last line
    path.write_bytes(header + lines[0] + lines[1][:30] + lines[2] + lines[3] + lines[4][:-9])
    result = run(spec, registry, resume=True)
    assert result.timings["resumed_pes"] == 2  # lines 0 and 3; 1+2 glued and 4 cut: redone
    assert (cut / "results.json").read_bytes() == (ref / "results.json").read_bytes()
    rewritten = path.read_bytes().splitlines(keepends=True)
    assert len(rewritten) == 10 and all(line.endswith(b"\n") for line in rewritten)
    for line in rewritten[1:]:
        json.loads(line)


def test_corrupt_checkpoint_header_and_another_spec_are_refused(tmp_path, registry):
    spec = parse_spec(spec_dict(tmp_path, 1, 2))
    run(spec, registry)
    other = parse_spec(spec_dict(tmp_path, 2, 2))
    with pytest.raises(CheckpointError, match="belongs to another spec"):
        run(other, registry, resume=True)
    path = tmp_path / CHECKPOINT
    path.write_bytes(b"\x00garbage\n" + path.read_bytes().split(b"\n", 1)[1])
    with pytest.raises(CheckpointError, match="the header line is corrupt"):
        run(spec, registry, resume=True)


def test_resume_ignores_output_settings_and_uses_the_training_cache(tmp_path, registry,
                                                                   monkeypatch):
    ref, cut = tmp_path / "ref", tmp_path / "cut"
    raw = spec_dict(ref, 2, 3, interval={"name": "slow-counting"})
    run(parse_spec(raw), registry)
    raw["output"] = {"directory": str(cut), "plots": False, "progress": False,
                     "workspace": False}
    monkeypatch.setattr(Counting, "interrupt_after", 3)
    with pytest.raises(KeyboardInterrupt):
        run(parse_spec(raw), registry)
    monkeypatch.setattr(Counting, "interrupt_after", -1)
    assert (cut / TRAINING_CACHE).exists()
    SlowCounting.fits = 0
    raw["output"]["workspace"] = True  # cannot change a record: still the same experiment
    result = run(parse_spec(raw), registry, resume=True)
    assert SlowCounting.fits == 0 and result.timings["training_cached"] is True
    assert result.records == json.loads((ref / "results.json").read_text())["pseudo_experiments"]


def test_a_stale_training_cache_is_ignored_with_a_message(tmp_path, registry, caplog):
    import pickle

    spec = parse_spec(spec_dict(tmp_path, 1, 2, interval={"name": "slow-counting"}))
    run(spec, registry)
    with open(tmp_path / TRAINING_CACHE, "wb") as f:
        pickle.dump({"format": 1, "resume_digest": "0" * 16}, f)
        pickle.dump(None, f)
    SlowCounting.fits = 0
    with caplog.at_level("WARNING", logger="workbench"):
        run(spec, registry, resume=True)
    assert "ignoring stale training cache" in caplog.text
    assert SlowCounting.fits == 1


def test_ctrl_c_to_the_process_group_stops_the_pool_and_keeps_the_finished_pes(tmp_path,
                                                                             reference):
    spec, _ = reference
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, str(DRIVER), "run", str(spec), "-o", str(out),
                             "--no-progress", "--executor", "processes", "--workers", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    while _records(out) < 2:
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.01)
    children = psutil.Process(proc.pid).children(recursive=True)
    os.killpg(proc.pid, signal.SIGINT)  # what the terminal does on Ctrl-C
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "Traceback" not in err  # the workers ignore Ctrl-C; the parent stops them
    saved = json.loads((out / "results.json").read_text())
    n = len(saved["pseudo_experiments"])
    assert err.strip().splitlines()[-1] == (f"workbench: interrupted; {n} of {N} "
                                            f"pseudo-experiments are saved in {out}; continue "
                                            "with --resume")
    assert n >= 2 and saved["summary"]["complete"] is False
    _, alive = psutil.wait_procs(children, timeout=10)
    assert not [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
