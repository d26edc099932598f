"""Shared fixtures. The suite makes its own data: a Fashion-MNIST in the real IDX format whose
images are learnable (``fake_layouts.make_fashion_mnist``), so every training test runs on any
machine. Only test_data.py's test of the real dataset reads Debian's copy, and it fails, not
skips, when the copy is missing.

Inside the test process the dataset's default places (Debian's folder, the download cache) are
hidden, so no test can use the real data without asking for it. Set MATE_TESTS_HIDE_REAL_DATA=1
to hide Debian's copy from the real-data tests too, as on a machine without it.
"""
import json
import os
from contextlib import contextmanager
from pathlib import Path

# One intra-op thread per test process (and the subprocesses tests start): tiny models gain little
# from more, and several processes spinning on shared cores slow each other down badly.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
from filelock import FileLock  # noqa: E402

from fake_layouts import make_fashion_mnist  # noqa: E402

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


@pytest.fixture(scope="session", autouse=True)
def default_places_hold_no_data(tmp_path_factory):
    """Debian's folder and the download cache, as the dataset builders see them, are empty."""
    import mate.data.fashion_mnist as fm

    empty = tmp_path_factory.mktemp("no_data")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(fm, "DEBIAN_DIR", empty / "fashion-mnist")
        mp.setenv("MATE_DATA", str(empty))
        yield


@contextmanager
def made_once(tmp_path_factory, name: str):
    """``with made_once(tmp_path_factory, name) as (folder, made):`` a folder that every process
    of the session shares (the workers of ``pytest -n N`` too): the first to get there makes its
    contents (``made`` is False; it writes them inside the block), the others wait for it and
    then find ``made`` True."""
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    folder = shared / name
    with FileLock(str(folder) + ".lock"):
        done = folder / ".made"
        made = done.is_file()
        folder.mkdir(exist_ok=True)
        yield folder, made
        done.touch()


@pytest.fixture(scope="session")
def fmnist_root(tmp_path_factory) -> Path:
    """The suite's own Fashion-MNIST: 6,000 training and 1,000 test images in the four gzipped IDX files."""
    with made_once(tmp_path_factory, "fashion_mnist") as (folder, made):
        if not made:
            make_fashion_mnist(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_config(fmnist_root):
    """``tiny_config(out_dir, objective, epochs, **overrides)``: a config that trains a width-8
    ResNet-18 on 2,048 of the suite's Fashion-MNIST images in seconds."""
    from mate.config import load_config

    def make(tmp_path, objective="mate", epochs=2, **extra):
        overrides = [
            "data.name=fashion_mnist", f"data.root={fmnist_root}", "data.download=false", "data.val_size=1000",
            "data.train_subset=2048", "data.test_subset=1000", "data.batch_size=64", "data.crop_padding=2",
            "model.name=resnet18", "model.width=8", f"objective.name={objective}", f"optim.epochs={epochs}",
            "optim.lr=0.1", "optim.schedule=cosine", "optim.nesterov=true", "run.progress=false",
            "run.tensorboard=false", f"run.out_dir={tmp_path}",
        ]
        overrides += [f"{k}={v}" for k, v in extra.items()]
        return load_config(None, overrides)

    return make


@pytest.fixture(scope="session")
def tiny_run(tiny_config, tmp_path_factory):
    """``tiny_run(objective)``: the results of one finished 3-epoch ``tiny_config`` run (run folder
    ``tiny``), trained the first time a test of the session asks for that objective and shared by
    all (by every worker of ``pytest -n N`` too). Tests read these runs and never write into
    their folders."""
    from mate.engine import train

    def get(objective: str) -> dict:
        with made_once(tmp_path_factory, f"tiny_{objective}") as (out, made):
            saved = out / "results_returned.json"
            if not made:
                config = tiny_config(out, objective, 3, **{"run.name": "tiny", "data.eval_batch_size": 250})
                saved.write_text(json.dumps(train(config, log=lambda s: None)))
        return json.loads(saved.read_text())

    return get


_SESSION: dict = {}


@pytest.fixture(autouse=True, scope="session")
def _register_tiny_config(tiny_config):
    _SESSION["tiny_config"] = tiny_config


def make_tiny_config(*args, **kwargs):
    """``tiny_config`` for a test module's plain helper functions (same arguments as the fixture)."""
    return _SESSION["tiny_config"](*args, **kwargs)


def load_script(name: str):
    """scripts/NAME.py as a module, for testing its functions and main() in-process."""
    import importlib.util

    path = Path(__file__).resolve().parent.parent / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
