import os
from pathlib import Path

# One intra-op thread per test process (and the subprocesses tests start): tiny models gain little
# from more, and several processes spinning on shared cores slow each other down badly.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

FMNIST_DIR = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(scope="session")
def fmnist_available() -> bool:
    if not (FMNIST_DIR / "train-images-idx3-ubyte.gz").exists():
        pytest.skip("Debian's dataset-fashion-mnist is not installed (.ci/run installs it)")
    return True


def tiny_config(tmp_path, objective="mate", epochs=2, **extra):
    """A config that trains a width-8 ResNet-18 on 4,096 real Fashion-MNIST images in seconds."""
    from mate.config import load_config

    overrides = [
        "data.name=fashion_mnist", "data.val_size=1000", "data.train_subset=4096", "data.test_subset=1000",
        "data.batch_size=128", "data.crop_padding=2", "model.name=resnet18", "model.width=8",
        f"objective.name={objective}", f"optim.epochs={epochs}", "optim.lr=0.1", "optim.schedule=cosine",
        "optim.nesterov=true", "run.progress=false", "run.tensorboard=false", f"run.out_dir={tmp_path}",
        "data.download=false",
    ]
    overrides += [f"{k}={v}" for k, v in extra.items()]
    return load_config(None, overrides)
