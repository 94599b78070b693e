"""Faults: kill -9 during `rsgan translate`, `rsgan batch` and training; Ctrl-C; a full disk.

After a kill the final output is absent or whole (never partial), and a rerun completes
with the same pixels as an uninterrupted run. A full disk (a 1 MiB tmpfs when this runs as
root, else RLIMIT_FSIZE in a child process) gives a clear rsgan error and no output.
"""

from __future__ import annotations

import json
import resource
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio

from rsgan.checkpoint import load_model, load_train_state
from rsgan.pipelines.catalog import read_manifest

from .conftest import files_under, tiny_checkpoint, valid_scene

RSGAN = str(Path(sys.executable).with_name("rsgan"))
POLL_S = 0.02


def _pixels(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read()


def _wait_for(predicate, proc: subprocess.Popen, limit_s: float = 300) -> bool:
    """Poll until ``predicate()`` or the process ends; True when the predicate held."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        if proc.poll() is not None:
            return predicate()
        time.sleep(POLL_S)
    raise AssertionError("the command neither reached the point to kill it nor ended")


def _signal_while_writing(
    args: list[str], ready, sig: int, reset, attempts: int = 3
) -> tuple[subprocess.Popen, str]:
    """Start ``args``, send ``sig`` once ``ready()`` holds, and return the process and its
    stderr. The write phase lasts about a second here, so on a busy machine the signal can
    land after the command finished (exit 0): then ``reset()`` and try again."""
    for _ in range(attempts):
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        reached = _wait_for(ready, proc)
        proc.send_signal(sig)
        _, stderr = proc.communicate(timeout=300)
        if reached and proc.returncode != 0:
            return proc, stderr
        reset()
    raise AssertionError(f"the command finished before the signal {attempts} times")


def _empty(folder: Path):
    return lambda: [_remove(p) for p in folder.iterdir()]


def _remove(path: Path) -> None:
    shutil.rmtree(path) if path.is_dir() else path.unlink()


def _temporaries(folder: Path) -> list[str]:
    return sorted(name for name in files_under(folder) if ".rsgan-tmp-" in name)


@pytest.fixture(scope="module")
def big_inputs(tmp_path_factory) -> tuple[Path, Path]:
    """A 768 x 768 scene (many 128 px tiles: the run lasts long enough to be killed)."""
    root = tmp_path_factory.mktemp("faults")
    return valid_scene(root / "big.tif", size=768), tiny_checkpoint(root / "m.safetensors")


def _translate_args(src: Path, dst: Path, model: Path) -> list[str]:
    return [RSGAN, "translate", str(src), str(dst), "--model", str(model), "--tile", "128",
            "--overlap", "16", "--device", "cpu", "--precision", "fp32", "-q"]  # fmt: skip


def _assert_same_scene(path: Path, reference: np.ndarray) -> None:
    """Whole and right. Batch workers run torch with other thread settings than this
    process, so float sums may round a pixel 1 DN apart; a partial file differs by far more
    (or cannot be read at all)."""
    pixels = _pixels(path)
    assert pixels.shape == reference.shape
    assert np.abs(pixels.astype(int) - reference).max() <= 1


@pytest.fixture(scope="module")
def reference(big_inputs, tmp_path_factory) -> np.ndarray:
    """The uninterrupted output's pixels (same options as the CLI runs, in this process)."""
    from rsgan.pipelines.translate import translate_raster

    src, model = big_inputs
    dst = tmp_path_factory.mktemp("reference") / "ref.tif"
    translate_raster(
        src, dst, model, tile=128, overlap=16, device="cpu", precision="fp32", progress=False
    )
    return _pixels(dst)


def test_kill_9_during_translate_leaves_no_output_and_rerun_matches(
    big_inputs, reference, tmp_path, tally
) -> None:
    tally.add("rsgan translate", "kill -9 while writing")
    src, model = big_inputs
    dst = tmp_path / "out.tif"
    args = _translate_args(src, dst, model)
    ready = lambda: bool(_temporaries(tmp_path))  # noqa: E731
    proc, _ = _signal_while_writing(args, ready, signal.SIGKILL, _empty(tmp_path))
    assert proc.returncode == -signal.SIGKILL
    assert not dst.exists(), "a killed translate left a (partial) output under the final name"
    subprocess.run(_translate_args(src, dst, model), check=True, timeout=600)
    _assert_same_scene(dst, reference)


@pytest.mark.slow
def test_rerun_after_kill_removes_the_killed_runs_temporary(big_inputs, tmp_path, tally) -> None:
    tally.add("rsgan translate", "kill -9 then rerun: stale temporary")
    src, model = big_inputs
    dst = tmp_path / "out.tif"
    args = _translate_args(src, dst, model)
    ready = lambda: bool(_temporaries(tmp_path))  # noqa: E731
    _signal_while_writing(args, ready, signal.SIGKILL, _empty(tmp_path))
    subprocess.run(_translate_args(src, dst, model), check=True, timeout=600)
    assert _temporaries(tmp_path) == [], "the killed run's temporary file is still there"


@pytest.mark.slow
def test_ctrl_c_during_translate_exits_130_and_leaves_nothing(big_inputs, tmp_path, tally) -> None:
    tally.add("rsgan translate", "Ctrl-C (SIGINT) while writing")
    src, model = big_inputs
    dst = tmp_path / "out.tif"
    args = _translate_args(src, dst, model)
    ready = lambda: bool(_temporaries(tmp_path))  # noqa: E731
    proc, stderr = _signal_while_writing(args, ready, signal.SIGINT, _empty(tmp_path))
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1].startswith("Interrupted"), stderr
    assert files_under(tmp_path) == set(), "Ctrl-C left files behind"


@pytest.mark.slow
def test_kill_9_during_batch_then_rerun_completes(big_inputs, reference, tmp_path, tally) -> None:
    tally.add("rsgan batch", "kill -9 while writing")
    src, model = big_inputs
    scenes = tmp_path / "scenes"
    scenes.mkdir()
    for i in range(3):
        shutil.copy(src, scenes / f"s{i}.tif")
    out = tmp_path / "out"
    args = [RSGAN, "batch", str(scenes), str(out), "--model", str(model), "--workers", "0",
            "--tile", "128", "--overlap", "16", "--device", "cpu", "--precision", "fp32", "-q"]  # fmt: skip
    # kill while the second scene is being written: one done, one partial, one pending
    ready = lambda: (out / "s0_translated.tif").exists() and bool(_temporaries(out))  # noqa: E731
    proc, _ = _signal_while_writing(args, ready, signal.SIGKILL, lambda: shutil.rmtree(out))
    assert proc.returncode == -signal.SIGKILL
    # killed between s0's rename and its STAC Item, s0 cannot be verified and is redone
    finished_before_kill = (out / "s0_translated.json").exists()
    for output in out.glob("*_translated.tif"):  # whatever is under a final name is whole
        _assert_same_scene(output, reference)
    manifest = read_manifest(out)
    assert manifest is not None and len(manifest) == 3  # readable: written atomically
    rerun = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    manifest = read_manifest(out).set_index("scene")
    assert set(manifest.status) <= {"done", "skipped"}, manifest.status
    if finished_before_kill:  # output and STAC Item verified: not redone
        assert manifest.status["s0"] == "skipped"
    for i in range(3):
        _assert_same_scene(out / f"s{i}_translated.tif", reference)
    assert _temporaries(out) == []


# --------------------------------------------------------------------------- training

_TRAIN = textwrap.dedent(
    """
    import sys
    from rsgan.models import DCGANConfig
    from rsgan.training import TrainOptions, train_dcgan
    scene, out, steps, resume = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1"
    options = TrainOptions(steps=steps, batch_size=2, checkpoint_every=1, sample_every=0,
                           log_every=1, device="cpu", precision="fp32", progress=False,
                           resume=resume)
    config = DCGANConfig(image_size=64, ngf=4, ndf=4, nz=8)
    train_dcgan([scene], out, config=config, options=options)
    """
)


def _train(scene: Path, out: Path, steps: int, resume: bool) -> list[str]:
    return [sys.executable, "-c", _TRAIN, str(scene), str(out), str(steps), "1" if resume else "0"]


def _logged_steps(out: Path) -> list[int]:
    lines = (out / "log.jsonl").read_text().splitlines()
    return [json.loads(line)["step"] for line in lines if line.strip()]


@pytest.mark.slow
def test_kill_9_during_training_then_resume_finishes(tmp_path, tally) -> None:
    """Kill a run three times at random moments after a checkpoint (one is saved every
    step, so kills land in and between saves); every time the checkpoint and the training
    state load, and resuming finishes the run."""
    scene = valid_scene(tmp_path / "scene.tif", size=160)
    out = tmp_path / "run"
    rng = np.random.default_rng(0)
    never = 100_000  # the killed runs would go on for hours
    seen_steps = [0]
    for attempt in range(3):
        tally.add("train_dcgan", "kill -9 while training")
        proc = subprocess.Popen(_train(scene, out, never, resume=attempt > 0))
        reached = _wait_for(lambda b=seen_steps[-1]: _safe_steps(out) > b, proc)
        time.sleep(float(rng.uniform(0.0, 0.3)))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert reached and proc.returncode == -signal.SIGKILL, "training ended before the kill"
        model = load_model(out / "model.safetensors")  # whole: never half-written
        state = load_train_state(out / "train_state.pt")
        assert model.steps > seen_steps[-1], "a resumed run went back in steps"
        assert abs(int(state["step"]) - model.steps) <= 1  # saved one after the other
        seen_steps.append(model.steps)
    tally.add("train_dcgan", "resume after kill -9")
    final = seen_steps[-1] + 2
    subprocess.run(_train(scene, out, final, resume=True), check=True, timeout=600)
    assert load_model(out / "model.safetensors").steps == final
    assert _logged_steps(out) == list(range(1, final + 1))  # steps redone are logged once


class _Killed(BaseException):
    """Stands for SIGKILL: nothing in rsgan catches it, no cleanup code runs after it."""


def test_kill_between_the_checkpoint_and_the_state_still_resumes(tmp_path, monkeypatch, tally):
    """The moment the random kills above hit only sometimes: the checkpoint of step 2 is
    written, the training state of step 2 is not (the state of step 1 is on disk)."""
    import rsgan.training as training
    from rsgan.training import TrainOptions, train_dcgan

    tally.add("train_dcgan", "kill between checkpoint and state, then resume")
    scene = valid_scene(tmp_path / "scene.tif", size=64)
    config = {"image_size": 64, "ngf": 4, "ndf": 4, "nz": 8}
    options = {"batch_size": 1, "device": "cpu", "precision": "fp32", "progress": False}
    saved = training.save_checkpoint
    calls = []

    def save_then_die(path, **kwargs):  # model.safetensors renamed, train_state.pt not yet
        result = saved(path, **kwargs)
        calls.append(kwargs["steps"])
        if len(calls) == 2:
            raise _Killed
        return result

    monkeypatch.setattr(training, "save_checkpoint", save_then_die)
    with pytest.raises(_Killed):
        train_dcgan(
            [scene], tmp_path / "run", config=config,
            options=TrainOptions(steps=5, checkpoint_every=1, sample_every=0, **options),
        )  # fmt: skip
    monkeypatch.setattr(training, "save_checkpoint", saved)
    assert load_model(tmp_path / "run" / "model.safetensors").steps == 2
    assert load_train_state(tmp_path / "run" / "train_state.pt")["step"] == 1
    again = TrainOptions(steps=3, resume=True, checkpoint_every=1, sample_every=0, **options)
    train_dcgan([scene], tmp_path / "run", config=config, options=again)
    assert load_model(tmp_path / "run" / "model.safetensors").steps == 3


def test_resume_accepts_the_same_config_given_as_a_mapping(tmp_path, tally) -> None:
    from rsgan.training import TrainOptions, train_dcgan

    tally.add("train_dcgan", "resume with the config as a dict")
    scene = valid_scene(tmp_path / "scene.tif", size=64)
    config = {"image_size": 64, "ngf": 4, "ndf": 4, "nz": 8}
    options = {"batch_size": 1, "device": "cpu", "precision": "fp32", "progress": False}
    train_dcgan([scene], tmp_path / "run", config=config, options=TrainOptions(steps=1, **options))
    again = TrainOptions(steps=2, resume=True, **options)
    train_dcgan([scene], tmp_path / "run", config=config, options=again)
    assert load_model(tmp_path / "run" / "model.safetensors").steps == 2


def _safe_steps(out: Path) -> int:
    """Steps of the run's checkpoint; -1 while there is none. An atomic rename means a
    checkpoint that exists is always whole, so any load error here is a real failure."""
    if not (out / "model.safetensors").exists() or not (out / "train_state.pt").exists():
        return -1
    return load_model(out / "model.safetensors").steps


def test_failed_checkpoint_write_keeps_the_previous_checkpoint(
    tmp_path, monkeypatch, tally
) -> None:
    """A write that dies half-way (disk full, I/O error) leaves the old checkpoint whole."""
    import rsgan.checkpoint as checkpoint_module

    tally.add("save_checkpoint", "write fails half-way")
    path = tiny_checkpoint(tmp_path / "model.safetensors")
    before = path.read_bytes()

    def half_write(tensors, filename, metadata=None):
        Path(filename).write_bytes(before[: len(before) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint_module, "save_file", half_write)
    with pytest.raises(OSError):
        tiny_checkpoint(path)
    assert path.read_bytes() == before
    assert load_model(path).kind == "cyclegan"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]


# --------------------------------------------------------------------------- full disk


def _disk_full_child(src: Path, dst: Path, model: Path, limit: int | None) -> subprocess.Popen:
    def limit_file_size() -> None:
        if limit is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # write() returns EFBIG instead

    args = _translate_args(src, dst, model)
    args[args.index("-q") :] = ["-q", "--dtype", "float32"]  # 768*768*3*4 B: 7 MB
    return subprocess.run(
        args, capture_output=True, text=True, timeout=600, preexec_fn=limit_file_size
    )


def _assert_clear_disk_error(result, folder: Path) -> None:
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error:"), result.stderr
    assert "out.tif" in lines[0]
    assert files_under(folder) == set(), "a failed write left files behind"


def test_file_size_limit_gives_a_clear_error_and_no_output(big_inputs, tmp_path, tally) -> None:
    tally.add("rsgan translate", "write error (RLIMIT_FSIZE 1 MiB)")
    src, model = big_inputs
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    result = _disk_full_child(src, out_dir / "out.tif", model, limit=2**20)
    _assert_clear_disk_error(result, out_dir)


@pytest.fixture
def small_tmpfs(tmp_path):
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.decode().strip()}); "
                    "the RLIMIT_FSIZE test covers the write error")  # fmt: skip
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.slow
def test_full_disk_gives_a_clear_error_and_no_output(big_inputs, small_tmpfs, tally) -> None:
    tally.add("rsgan translate", "disk full (1 MiB tmpfs)")
    src, model = big_inputs
    result = _disk_full_child(src, small_tmpfs / "out.tif", model, limit=None)
    _assert_clear_disk_error(result, small_tmpfs)
    assert shutil.disk_usage(small_tmpfs).used < 2**19, "space of the failed write not freed"


@pytest.mark.slow
def test_output_folder_removed_mid_run_is_a_clear_error(big_inputs, tmp_path, tally) -> None:
    tally.add("rsgan translate", "output folder deleted while writing")
    src, model = big_inputs
    folder = tmp_path / "vanishing"
    folder.mkdir()
    proc = subprocess.Popen(
        _translate_args(src, folder / "out.tif", model), stderr=subprocess.PIPE, text=True
    )
    reached = _wait_for(lambda: bool(_temporaries(folder)), proc)
    shutil.rmtree(folder)
    _, stderr = proc.communicate(timeout=300)
    if proc.returncode == 0:
        pytest.skip("translate finished before its folder was removed (busy machine)")
    assert reached
    assert proc.returncode == 1, stderr
    assert "Traceback" not in stderr, stderr
    assert not folder.exists()
