"""Bad inputs fail at start-up, clearly, before compiling, and leave the workdir as it was (7.5).

Every row goes through a real entry point: `train.train_and_evaluate` for config values, data
and workdir problems; `main.parse_flags` (what `python -m seqjepa_jax.main` parses argv with) for
command-line overrides; and one `python -m seqjepa_jax.main` subprocess for the device count, which
must be forced before JAX starts. For each row the test checks that

- the error has the expected type and its message names the field or file and the fix (a regex);
- nothing was compiled: no XLA backend compilation happened, and the state initialiser and the
  train step were never built (both are patched to fail if called);
- the workdir holds exactly what it held before (absent stays absent; a previous run's
  checkpoint and config.json stay byte-identical and untouched);
- the error counts as the user's, so the command line prints it as one `ERROR:` line without a
  traceback (issue 20; `user_errors.py`).

Bad inputs met after start-up (a damaged file read mid-run, a full disk), the workdir lock and the
config-change rules in detail, and the messages of the three command lines are in
tests/test_bad_inputs_runs.py; the converter's key and shape mismatches in tests/test_convert.py.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import re
import shutil
import subprocess
import sys
import types
from collections.abc import Callable

import jax
import numpy as np
import pytest
from tiny import load_config

from seqjepa_jax import checkpointing, main, train, user_errors
from seqjepa_jax.config_defaults import set_field
from seqjepa_jax.data import datasets
from seqjepa_jax.data.threediebench import write_3diebench_tree
from seqjepa_jax.run_config import ConfigChangedError
from seqjepa_jax.workdir_lock import WorkdirLock, WorkdirLockedError

ROOT = os.path.join(os.path.dirname(__file__), "..")
TREE_OBJECTS, TREE_VIEWS = 8, 8


@dataclasses.dataclass(frozen=True)
class Row:
    """One bad input: config overrides and/or a `prepare(paths)` step, and the expected error."""

    name: str
    error: type[BaseException]
    match: str
    overrides: tuple[tuple[str, object], ...] = ()
    prepare: Callable[[types.SimpleNamespace], None] | None = None


def corrupt_jpeg(paths):
    with open(os.path.join(paths.object_dirs[3], "image_5.jpg"), "r+b") as f:
        f.truncate(300)


def wrong_latent(paths):
    np.save(os.path.join(paths.object_dirs[0], "latent_2.npy"), np.zeros((3, 3)))


def drop_index(paths):
    os.remove(os.path.join(paths.tree, "train_images.npy"))


def drop_object_folder(paths):
    shutil.rmtree(paths.object_dirs[-1])


def drop_middle_object_folder(paths):
    shutil.rmtree(paths.object_dirs[3])


def previous_run(paths, width: int = 4, batch_size: int = 8):
    """A previous run's workdir: config.json and a checkpoint at step 4 (zeros)."""
    config = load_config("default", "tiny")
    config.model.width, config.train.batch_size = width, batch_size
    model, probes = train.build_model(config)
    learning_rate, _ = train.build_schedules(config, steps_per_epoch=6)
    optimizer = train.build_optimizer("adam", learning_rate, 0.0)
    template = train.abstract_state(config, model, probes, optimizer, train.make_mesh())
    state = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), template)
    ckpt = checkpointing.Checkpointer(
        os.path.join(paths.workdir, "checkpoints"), save_every_steps=1, async_save=False
    )
    ckpt.save(4, state)
    ckpt.close()
    with open(os.path.join(paths.workdir, "config.json"), "w") as f:
        f.write(config.to_json_best_effort())


def other_model_checkpoint(paths):
    previous_run(paths, width=8)


def workdir_in_use(paths):
    """Another run holds the workdir's lock (released by the test)."""
    os.makedirs(paths.workdir)
    paths.held = WorkdirLock(paths.workdir).acquire()


def workdir_under_a_file(paths):
    open(paths.blocker, "w").close()
    paths.workdir = os.path.join(paths.blocker, "work")


def workdir_is_a_file(paths):
    open(paths.workdir, "w").close()


TREE = (("data.name", "3diebench"), ("data.views_per_object", TREE_VIEWS))
ROWS = [
    Row("M_tr < 1", ValueError, r"config.train.seq_len=0: M_tr must be >= 1",
        (("train.seq_len", 0),)),
    Row("negative batch", ValueError,
        r"config.train.batch_size=-4 is not a positive multiple of the 1 devices",
        (("train.batch_size", -4),)),
    Row("M_val given text", ValueError,
        r"config.eval.m_val=\('abc',\) must be a tuple of integers such as \(1, 3, 5\); on the "
        r"command line pass e.g. --config.eval.m_val=1,3,5", (("eval.m_val", ("abc",)),)),
    Row("stage sizes given text", ValueError,
        r"config.model.stage_sizes=\('two',\) must be a tuple of integers",
        (("model.stage_sizes", ("two",)),)),
    Row("width not divisible by heads", ValueError,
        r"config.model.num_heads=3 does not divide the aggregator token width 40 .*change one",
        (("model.num_heads", 3),)),
    Row("unknown dataset", ValueError, r"config.data.name='imagenet21k' is unknown; use one of",
        (("data.name", "imagenet21k"),)),
    Row("unknown latent type", ValueError,
        r"config.data.latent_type='quat' does not fit config.data.name='procedural'; use one",
        (("data.latent_type", "quat"),)),
    Row("unknown stem", ValueError, r"config.model.stem='vit' is unknown; use one of",
        (("model.stem", "vit"),)),
    Row("unknown compute dtype", ValueError, r"config.model.compute_dtype='int8'; use one of",
        (("model.compute_dtype", "int8"),)),
    Row("more views than stored", ValueError,
        r"config.train.seq_len=8 needs M_tr \+ 1 = 9 distinct views .*lower seq_len",
        (("train.seq_len", 8),)),
    Row("too few eval views", ValueError, r"config.eval.num_views=2 is too few .*at least 4",
        (("eval.num_views", 2),)),
    Row("image below encoder stride", ValueError,
        r"config.data.image_size=4 is smaller than the encoder's total stride 8.*at least 8",
        (("data.image_size", 4),)),
    Row("unknown optimizer", ValueError, r"config.train.optimizer='sgd' is unknown; use one of",
        (("train.optimizer", "sgd"),)),
    Row("unknown LR schedule", ValueError, r"config.train.lr_schedule='linear' is unknown",
        (("train.lr_schedule", "linear"),)),
    Row("EMA tau out of range", ValueError, r"config.train.ema_tau_base=1.5 must lie in \[0, 1\]",
        (("train.ema_tau_base", 1.5),)),
    Row("non-positive learning rate", ValueError, r"config.train.learning_rate=0.0 <= 0",
        (("train.learning_rate", 0.0),)),
    Row("Adam with weight decay", ValueError,
        r"config.train.weight_decay=0.05 with optimizer 'adam'.*set weight_decay=0.0 or",
        (("train.weight_decay", 0.05),)),
    Row("two-channel normalisation", ValueError, r"config.data.mean/std need 3 channels",
        (("data.mean", (0.5, 0.5)),)),
    Row("unknown non-finite policy", ValueError,
        r"config.train.on_nonfinite='ignore' is unknown; use one of \('stop', 'skip'\)",
        (("train.on_nonfinite", "ignore"),)),
    Row("checkpoint interval 0", ValueError, r"config.train.checkpoint_every_steps=0 must be >= 1",
        (("train.checkpoint_every_steps", 0),)),
    Row("batch larger than the data", ValueError,
        r"train data .*48 objects.* does not fit config.train.batch_size.*Lower the batch size",
        (("train.batch_size", 64),)),
    Row("missing data directory", FileNotFoundError,
        r"3DIEBench root .*nowhere does not exist.*To fix: point root",
        (*TREE, ("data.data_dir", "/nonexistent/nowhere"))),
    Row("empty data directory setting", ValueError,
        r"config.data.data_dir is empty: point it at the 3DIEBench root",
        (*TREE, ("data.data_dir", ""))),
    Row("missing index file", FileNotFoundError, r"Missing 'train' index file .*train_images.npy",
        TREE, drop_index),
    Row("missing object folder", FileNotFoundError,
        r"Object folder .*obj0000000007 \(entry 7 .* is missing", TREE, drop_object_folder),
    Row("missing object folder in the middle", FileNotFoundError,
        r"Object folder .*obj0000000003 \(entry 3 .* is missing", TREE, drop_middle_object_folder),
    Row("corrupt JPEG (on_bad_file='fail')", ValueError,
        r"Damaged dataset file: .*obj0000000003/image_5.jpg is truncated.*on_bad_file='skip'",
        (*TREE, ("data.verify_files", True)), corrupt_jpeg),
    Row("latent file of the wrong shape", ValueError,
        r"obj0000000000/latent_2.npy holds a float64 array of shape \(3, 3\); expected",
        (*TREE, ("data.verify_files", True)), wrong_latent),
    Row("checkpoint of a different model in the workdir", ValueError,
        r"checkpoint at step 4 .* different model .*: .* is float32\[.*\] in the checkpoint but "
        r"float32\[.*\] for this config\. Use a new --workdir", (), other_model_checkpoint),
    Row("rerun with another batch size", ConfigChangedError,
        r"holds a run that was started with another config .*step 4.*\n"
        r"  - config.train.batch_size: 8 -> 4\n.*--allow_config_change",
        (("train.batch_size", 4),), previous_run),
    Row("workdir in use by another run", WorkdirLockedError,
        rf"--workdir=.*work is in use by another run: pid {os.getpid()} on host .*, started .*"
        r"Wait for that run to finish", (), workdir_in_use),
    Row("unwritable workdir", ValueError,
        r"--workdir=.*blocker/work cannot be created or written .*pass a directory you can",
        (), workdir_under_a_file),
    Row("workdir is a file", ValueError, r"--workdir=.* exists and is not a directory",
        (), workdir_is_a_file),
]  # fmt: skip


def snapshot(path: str) -> dict[str, tuple[int, int]] | None:
    """{relative path: (size, mtime_ns)} of everything under `path`; None if it does not exist."""
    if not os.path.exists(path):
        return None
    if not os.path.isdir(path):
        return {".": (os.path.getsize(path), os.stat(path).st_mtime_ns)}
    found = {}
    for folder, dirs, files in os.walk(path):
        for name in dirs + files:
            full = os.path.join(folder, name)
            found[os.path.relpath(full, path)] = (os.path.getsize(full), os.stat(full).st_mtime_ns)
    return found


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """The tiny procedural cache (rendered once, here) and a 3DIEBench tree of 8 objects."""
    base = tmp_path_factory.mktemp("bad_inputs")
    config = load_config("default", "tiny")
    config.data.data_dir = str(base / "procedural")
    datasets.build_view_sources(config)  # renders the cache now, outside the no-compile window
    rng = np.random.default_rng(0)
    arrays = types.SimpleNamespace(
        images=rng.integers(0, 255, (TREE_OBJECTS, TREE_VIEWS, 16, 16, 3), dtype=np.uint8),
        latents=rng.normal(size=(TREE_OBJECTS, TREE_VIEWS, 7)).astype(np.float32),
        labels=np.arange(TREE_OBJECTS, dtype=np.int32) % 3,
        object_ids=np.arange(TREE_OBJECTS, dtype=np.int32),
    )
    write_3diebench_tree(arrays, str(base / "tree"), "train")
    write_3diebench_tree(arrays, str(base / "tree"), "val")
    return {"procedural": str(base / "procedural"), "tree": str(base / "tree")}


@pytest.fixture
def no_compiling(monkeypatch):
    """Counts XLA backend compilations; the state initialiser and the step must not be built."""
    compiled: list[str] = []

    def listener(event: str, duration: float, **kwargs) -> None:
        if event == "/jax/core/compile/backend_compile_duration":
            compiled.append(event)

    def refuse(*args, **kwargs):
        raise AssertionError("start-up checks let the run reach compilation")

    monkeypatch.setattr(train, "create_state", refuse)
    monkeypatch.setattr(train, "jit_train_step", refuse)
    jax.monitoring.register_event_duration_secs_listener(listener)
    yield compiled
    jax.monitoring.unregister_event_duration_listener(listener)


@pytest.mark.parametrize("row", ROWS, ids=[row.name for row in ROWS])
def test_bad_input_fails_at_startup(row, data, tmp_path, no_compiling):
    tree = str(tmp_path / "tree")
    shutil.copytree(data["tree"], tree)
    paths = types.SimpleNamespace(
        workdir=str(tmp_path / "work"),
        blocker=str(tmp_path / "blocker"),
        tree=tree,
        object_dirs=sorted(glob.glob(os.path.join(tree, "*", "obj*")), key=os.path.basename),
    )
    config = load_config("default", "tiny")
    config.data.data_dir = data["procedural"]
    for field, value in row.overrides:
        if field == "data.name" and value == "3diebench":
            config.data.data_dir = tree
        set_field(config, field, value)
    if row.prepare:
        row.prepare(paths)
    no_compiling.clear()  # count from here: the preparation may compile
    before = snapshot(paths.workdir)
    try:
        with pytest.raises(row.error, match="(?s)" + row.match) as info:  # "." spans lines
            train.train_and_evaluate(config, paths.workdir)
        assert no_compiling == []
        assert snapshot(paths.workdir) == before
    finally:
        if getattr(paths, "held", None):
            paths.held.release()
    assert user_errors.is_user_error(info.value), "the command line would print a traceback"


CLI_ROWS = [
    ("unknown config field", ["--config.train.nonexistent=1"],
     r"--config.train.nonexistent=1: config.train has no field 'nonexistent'; its fields are"),
    ("wrong type", ["--config.train.batch_size=abc"],
     r"config.train.batch_size is an integer \(now 8\); 'abc' is not an integer"),
    ("misspelt group", ["--config.trian.batch_size=4"],
     r"config has no field 'trian'; did you mean 'train'\?"),
    ("bool given a word", ["--config.train.use_ema=maybe"],
     r"config.train.use_ema is a bool; pass true or false, not 'maybe'"),
    ("tuple given text", ["--config.eval.m_val=abc"],
     r"--config.eval.m_val=abc: config.eval.m_val=\('abc',\) must be a tuple of integers such as "
     r"\(1, 3\); on the command line pass e.g. --config.eval.m_val=1,3"),
    ("stage sizes given a word", ["--config.model.stage_sizes=two"],
     r"config.model.stage_sizes=\('two',\) must be a tuple of integers"),
]  # fmt: skip


@pytest.mark.parametrize("argv, match", [r[1:] for r in CLI_ROWS], ids=[r[0] for r in CLI_ROWS])
def test_bad_override_fails_before_main(argv, match, tmp_path, capsys):
    workdir = str(tmp_path / "work")
    config = os.path.join(ROOT, "configs", "default.py")
    with pytest.raises(SystemExit) as exit_info:
        main.parse_flags(["main", f"--config={config}:tiny", f"--workdir={workdir}", *argv])
    assert exit_info.value.code == 1
    assert re.search(match, capsys.readouterr().err)
    assert not os.path.exists(workdir)


@pytest.mark.parametrize(
    "spec, match",
    [
        ("configs/missing.py", r"config file 'configs/missing.py' does not exist"),
        ("configs/default.py:huge", r"Unknown variant 'huge' for configs/default.py"),
        ("{tmp}/empty.py", r"Config file '.*empty.py' has no get_config function.*get_config\("),
        ("{tmp}/typo.py", r"Config file '.*typo.py' is not valid Python: .* \(line 2\)"),
    ],
)
def test_bad_config_file_fails_before_main(spec, match, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    (tmp_path / "empty.py").write_text("")
    (tmp_path / "typo.py").write_text("def get_config(arg=None):\n    return {'a': 1\n")
    spec = spec.format(tmp=tmp_path)
    with pytest.raises(SystemExit):
        main.parse_flags(["main", f"--config={spec}", f"--workdir={tmp_path / 'w'}"])
    err = capsys.readouterr().err
    assert re.search(match, err), err
    assert "Traceback" not in err


def test_batch_not_divisible_by_devices(tmp_path):
    """Two forced CPU devices, batch 7, through the command line (JAX logs every compile)."""
    workdir = tmp_path / "work"
    env = dict(
        os.environ,
        XLA_FLAGS="--xla_force_host_platform_device_count=2",
        JAX_LOG_COMPILES="1",
        TF_CPP_MIN_LOG_LEVEL="2",
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "seqjepa_jax.main",
            "--config=configs/default.py:tiny",
            f"--workdir={workdir}",
            f"--config.data.data_dir={tmp_path / 'data'}",
            "--config.train.batch_size=7",
            "--noxla_cpu_fast",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode != 0
    assert (
        "config.train.batch_size=7 is not a positive multiple of the 2 devices; use a multiple "
        "of 2" in result.stderr
    ), result.stderr[-3000:]
    assert "Compiling" not in result.stderr
    assert not workdir.exists() and not (tmp_path / "data").exists()
