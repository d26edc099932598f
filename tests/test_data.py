import gzip
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from fake_layouts import write_idx
from mate.data import ArrayDataset, InMemoryLoader, load_dataset, random_crop_flip, validation_split
from mate.data.fashion_mnist import read_idx
from mate.errors import DataError

DEBIAN_FMNIST = Path("/usr/share/datasets/fashion-mnist")


def make_fake_fmnist(folder, n_train=64, n_test=32, gz=True):
    rng = np.random.default_rng(0)
    sfx = ".gz" if gz else ""
    write_idx(folder / f"train-images-idx3-ubyte{sfx}", rng.integers(0, 256, (n_train, 28, 28)), gz)
    write_idx(folder / f"train-labels-idx1-ubyte{sfx}", rng.integers(0, 10, n_train), gz)
    write_idx(folder / f"t10k-images-idx3-ubyte{sfx}", rng.integers(0, 256, (n_test, 28, 28)), gz)
    write_idx(folder / f"t10k-labels-idx1-ubyte{sfx}", rng.integers(0, 10, n_test), gz)


@pytest.mark.parametrize("gz", [True, False])
def test_fashion_mnist_from_a_user_folder(tmp_path, gz):
    make_fake_fmnist(tmp_path, gz=gz)
    splits = load_dataset("fashion_mnist", root=str(tmp_path), download=False)
    assert splits.train.images.shape == (64, 1, 28, 28) and splits.test.images.shape == (32, 1, 28, 28)
    assert splits.train.images.dtype == torch.uint8 and splits.num_classes == 10
    assert splits.source == str(tmp_path)


def test_truncated_idx_file_is_named(tmp_path):
    make_fake_fmnist(tmp_path, gz=False)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataError, match="train-images-idx3-ubyte is truncated or corrupt"):
        read_idx(path)


def test_not_an_idx_file(tmp_path):
    path = tmp_path / "x"
    path.write_bytes(b"hello world, not idx")
    with pytest.raises(DataError, match="bad magic number"):
        read_idx(path)


def test_missing_fashion_mnist_lists_the_three_ways(tmp_path, monkeypatch):
    import mate.data.fashion_mnist as fm

    monkeypatch.setattr(fm, "DEBIAN_DIR", tmp_path / "nowhere")
    monkeypatch.setenv("MATE_DATA", str(tmp_path / "cache"))
    with pytest.raises(DataError) as err:
        load_dataset("fashion_mnist", root=str(tmp_path / "empty"), download=False)
    msg = str(err.value)
    assert "data.root" in msg and "apt-get install dataset-fashion-mnist" in msg and "data.download=true" in msg


def test_real_fashion_mnist(monkeypatch):
    """The one test of the real dataset: Debian's copy, found in its default place. Its absence is a
    failure, not a skip: the README's setup installs it."""
    import mate.data.fashion_mnist as fm

    hidden = os.environ.get("MATE_TESTS_HIDE_REAL_DATA") == "1"
    assert not hidden and (DEBIAN_FMNIST / "train-images-idx3-ubyte.gz").exists(), (
        f"Debian's dataset-fashion-mnist is not installed ({DEBIAN_FMNIST} is missing"
        f"{' or hidden by MATE_TESTS_HIDE_REAL_DATA=1' if hidden else ''}): scripts/setup.sh installs it")
    monkeypatch.setattr(fm, "DEBIAN_DIR", DEBIAN_FMNIST)  # the suite hides it from every other test
    splits = load_dataset("fashion_mnist", download=False)
    assert splits.source == str(DEBIAN_FMNIST)
    assert len(splits.train) == 60000 and len(splits.test) == 10000
    assert sorted(splits.train.labels.unique().tolist()) == list(range(10))
    # the dataset's published statistics
    x = splits.train.images.float() / 255
    assert x.mean().item() == pytest.approx(splits.mean[0], abs=2e-3)
    assert x.std().item() == pytest.approx(splits.std[0], abs=2e-3)


def make_fake_cifar(root, name="cifar10", n_per_file=20):
    rng = np.random.default_rng(0)
    if name == "cifar10":
        folder = root / "cifar-10-batches-py"
        folder.mkdir(parents=True)
        files, key, classes = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"], b"labels", 10
        pickle.dump({b"label_names": [f"c{i}".encode() for i in range(10)]}, open(folder / "batches.meta", "wb"))
    else:
        folder = root / "cifar-100-python"
        folder.mkdir(parents=True)
        files, key, classes = ["train", "test"], b"fine_labels", 100
        pickle.dump({b"fine_label_names": [f"c{i}".encode() for i in range(100)]}, open(folder / "meta", "wb"))
    for f in files:
        batch = {b"data": rng.integers(0, 256, (n_per_file, 3072), dtype=np.uint8),
                 key: rng.integers(0, classes, n_per_file).tolist()}
        pickle.dump(batch, open(folder / f, "wb"))
    return folder


@pytest.mark.parametrize("name,n_train", [("cifar10", 100), ("cifar100", 20)])
def test_cifar_in_the_official_python_format(tmp_path, name, n_train):
    folder = make_fake_cifar(tmp_path, name)
    splits = load_dataset(name, root=str(tmp_path), download=False)
    assert splits.train.images.shape == (n_train, 3, 32, 32) and len(splits.test) == 20
    assert splits.num_classes == (10 if name == "cifar10" else 100)
    # pixel layout: the first 1024 bytes of a row are the red channel, row-major
    first = pickle.load(open(folder / ("data_batch_1" if name == "cifar10" else "train"), "rb"))
    assert torch.equal(splits.train.images[0, 0].flatten(), torch.from_numpy(first[b"data"][0, :1024]))


def test_cifar_missing_and_corrupt(tmp_path):
    with pytest.raises(DataError, match="cifar-10-batches-py"):
        load_dataset("cifar10", root=str(tmp_path), download=False)
    folder = make_fake_cifar(tmp_path)
    (folder / "data_batch_3").write_bytes((folder / "data_batch_3").read_bytes()[:500])
    with pytest.raises(DataError, match="data_batch_3 is corrupt or truncated"):
        load_dataset("cifar10", root=str(tmp_path), download=False)


def test_cifar_reader_refuses_code_in_pickles(tmp_path):
    folder = make_fake_cifar(tmp_path)

    class Evil:
        def __reduce__(self):
            return (print, ("owned",))

    pickle.dump({b"data": Evil(), b"labels": []}, open(folder / "test_batch", "wb"))
    with pytest.raises(DataError, match="forbidden object"):
        load_dataset("cifar10", root=str(tmp_path), download=False)


def test_validation_split_is_disjoint_seeded_and_complete():
    tr, va = validation_split(100, 20, seed=3)
    assert len(va) == 20 and len(tr) == 80
    assert set(tr.tolist()).isdisjoint(va.tolist()) and set(tr.tolist()) | set(va.tolist()) == set(range(100))
    assert torch.equal(va, validation_split(100, 20, seed=3)[1])
    assert not torch.equal(va, validation_split(100, 20, seed=4)[1])


def test_batched_crop_and_flip_equal_per_sample_reference():
    torch.manual_seed(0)
    x = torch.randint(0, 256, (6, 2, 5, 7), dtype=torch.uint8)
    dy, dx = torch.tensor([0, 1, 2, 3, 4, 2]), torch.tensor([4, 3, 2, 1, 0, 2])
    flip = torch.tensor([True, False, True, False, False, True])
    out = random_crop_flip(x, dy, dx, flip, padding=2)
    for i in range(6):
        padded = torch.zeros(2, 9, 11, dtype=torch.uint8)
        padded[:, 2:7, 2:9] = x[i]
        ref = padded[:, dy[i]:dy[i] + 5, dx[i]:dx[i] + 7]
        if flip[i]:
            ref = ref.flip(-1)
        assert torch.equal(out[i], ref)
    # offset (p, p) and no flip is the identity
    same = random_crop_flip(x, torch.full((6,), 2), torch.full((6,), 2), torch.zeros(6, dtype=torch.bool), 2)
    assert torch.equal(same, x)


def _toy(n=50):
    return ArrayDataset(torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 1, 4, 4).contiguous(),
                        torch.arange(n) % 10)


def test_in_memory_loader_epochs_are_seeded_and_cover_the_data():
    data = _toy()
    a = InMemoryLoader(data, 16, "cpu", [0.0], [1 / 255], train=True, crop_padding=0, seed=1)
    b = InMemoryLoader(data, 16, "cpu", [0.0], [1 / 255], train=True, crop_padding=0, seed=1)
    assert len(a) == 3  # drop_last in training
    a.set_epoch(2); b.set_epoch(2)
    xa = [x for x, _ in a]; xb = [x for x, _ in b]
    assert all(torch.equal(p, q) for p, q in zip(xa, xb))
    seen = torch.cat([x[:, 0, 0, 0] for x in xa]).long()
    assert len(set(seen.tolist())) == 48
    a.set_epoch(3)
    assert not torch.equal(next(iter(a))[0], xa[0])
    # normalisation: (x/255 - mean)/std with std = 1/255 gives back the raw value
    ys = torch.cat([y for _, y in a])
    xs = torch.cat([x[:, 0, 0, 0] for x, _ in a]).long()
    assert torch.equal(xs % 10, ys)


def test_in_memory_loader_shards_each_global_batch_across_ranks():
    data = _toy()
    full = InMemoryLoader(data, 16, "cpu", [0.0], [1 / 255], train=True, crop_padding=1, flip=True, seed=5)
    parts = [InMemoryLoader(data, 16, "cpu", [0.0], [1 / 255], train=True, crop_padding=1, flip=True, seed=5,
                          rank=r, world_size=2) for r in range(2)]
    full, rank0, rank1 = list(full), list(parts[0]), list(parts[1])
    assert len(full) == len(rank0) == len(rank1) == 3  # 50 images, global batches of 16 (8 per rank)
    for (x, y), (x0, y0), (x1, y1) in zip(full, rank0, rank1):
        assert len(y0) == len(y1) == 8
        assert torch.equal(torch.cat([x0, x1]), x) and torch.equal(torch.cat([y0, y1]), y)


def test_eval_loader_keeps_order_and_last_partial_batch():
    data = _toy(45)
    loader = InMemoryLoader(data, 16, "cpu", [0.0], [1 / 255])
    ys = torch.cat([y for _, y in loader])
    assert len(loader) == 3 and torch.equal(ys, data.labels)


def test_the_suites_fashion_mnist_is_in_the_real_idx_format(fmnist_root):
    raw = gzip.decompress((fmnist_root / "train-images-idx3-ubyte.gz").read_bytes())
    # magic 0x00000803 (unsigned bytes, 3 dimensions), then 6000, 28, 28 as big-endian uint32
    assert raw[:16] == bytes.fromhex("00000803" "00001770" "0000001c" "0000001c") and len(raw) == 16 + 6000 * 784
    assert gzip.decompress((fmnist_root / "t10k-labels-idx1-ubyte.gz").read_bytes())[:8] == bytes.fromhex(
        "00000801" "000003e8")
    splits = load_dataset("fashion_mnist", root=str(fmnist_root), download=False)
    assert splits.source == str(fmnist_root)
    assert (len(splits.train), len(splits.test), splits.input_size, splits.in_channels) == (6000, 1000, 28, 1)
    assert splits.train.labels.bincount().tolist() == [600] * 10
    assert splits.test.labels.bincount().tolist() == [100] * 10


def test_the_default_places_hold_no_data_inside_the_suite(tmp_path):
    """No test reads the real Fashion-MNIST without asking for it (the real_fashion_mnist fixture)."""
    with pytest.raises(DataError, match="Fashion-MNIST was not found"):
        load_dataset("fashion_mnist", download=False)


def test_one_epoch_seed_fixes_both_loaders_and_the_training_step():
    from mate.data import StreamingLoader, epoch_seed

    assert epoch_seed(3, 7) == 3 * 1_000_003 + 7 == 3_000_016
    data = _toy(48)
    loader = InMemoryLoader(data, 16, "cpu", [0.0], [1 / 255], train=True, seed=3)
    loader.set_epoch(7)
    order = torch.randperm(48, generator=torch.Generator().manual_seed(3_000_016))
    assert torch.equal(torch.cat([y for _, y in loader]), data.labels[order])
    from mate.data import ImageFiles

    streamed = StreamingLoader(ImageFiles([f"{i}.png" for i in range(48)], data.labels), 16, "cpu", [0.0], [1.0],
                               image_size=4, train=True, seed=3, num_workers=0)
    streamed.set_epoch(7)
    assert [i for batch in streamed.global_batches() for i, _ in batch] == order.tolist()


def test_split_dataset_holds_out_validation_and_keeps_the_subsets():
    from mate.config import DataConfig
    from mate.data import DatasetSplits, split_dataset

    splits = DatasetSplits("toy", _toy(50), _toy(20), 10, [0.0], [1.0])
    train, val, test, val_idx = split_dataset(splits, DataConfig(val_size=10, split_seed=2, train_subset=5,
                                                                 test_subset=3))
    rest, held = validation_split(50, 10, seed=2)
    assert torch.equal(val_idx, held) and torch.equal(val.labels, splits.train.labels[held])
    assert torch.equal(train.labels, splits.train.labels[rest[:5]]) and test.labels.tolist() == [0, 1, 2]
    everything = split_dataset(splits, DataConfig(val_size=0))
    assert (len(everything[0]), len(everything[1]), len(everything[2])) == (50, 0, 20)


@pytest.mark.parametrize("name, shape", [("fashion_mnist", (10, 1, 28)), ("cifar10", (10, 3, 32)),
                                         ("cifar100", (100, 3, 32))])
def test_registered_shape_is_the_loaded_datasets(tmp_path, fmnist_root, name, shape):
    from mate.config import DataConfig
    from mate.data import dataset_info

    info = dataset_info(DataConfig(name=name, root=str(tmp_path / "nothing")))  # no file needed
    assert (info.num_classes, info.in_channels, info.input_size, info.image_files) == (*shape, False)
    root = fmnist_root if name == "fashion_mnist" else make_fake_cifar(tmp_path, name).parent
    splits = load_dataset(name, root=str(root), download=False)
    assert (splits.num_classes, splits.in_channels, splits.input_size) == shape


def test_the_config_default_eval_crop_is_the_one_data_held_in_memory_accepts():
    from mate.config import DataConfig
    from mate.data.build import DEFAULT_EVAL_CROP

    assert DataConfig().eval_crop == DEFAULT_EVAL_CROP == 0.875
