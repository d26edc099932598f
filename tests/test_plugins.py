"""User code without forking: a module of your own registers a model, a dataset and an objective
(``imports`` / ``--import``), and ``data.name=python`` streams any torch Dataset from a factory."""
import importlib
import json
import subprocess
import sys
import textwrap

import pytest
import torch

import mate
from mate.config import load_config
from mate.data import build_data, validation_split
from mate.engine import train
from mate.errors import ConfigError, DataError

# A user's plugin module, as a user writes it: only the public API.
PLUGIN = textwrap.dedent('''
    import torch
    from torch import nn
    from torch.utils.data import TensorDataset

    import mate
    from mate.data import ArrayDataset, DatasetSplits


    @mate.register_model("plugin_cnn")
    def plugin_cnn(num_classes: int, in_channels: int, input_size: int, width: int = 8):
        def block(cin, cout, stride):
            return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())
        stages = [block(width, width, 1), block(width, 2 * width, 2), block(2 * width, 4 * width, 2)]
        return mate.MultiExitNetwork(block(in_channels, width, 1), stages, num_classes, in_channels, input_size)


    @mate.register_dataset("plugin_blobs", mate.DatasetInfo(num_classes=3, in_channels=1, input_size=12))
    def plugin_blobs(root=None, download=False):
        g = torch.Generator().manual_seed(0)

        def split(n):
            labels = torch.arange(n) % 3
            images = torch.rand(n, 1, 12, 12, generator=g) * 80 + labels[:, None, None, None] * 60
            return ArrayDataset(images.to(torch.uint8), labels)

        return DatasetSplits("plugin_blobs", split(240), split(60), 3, (0.5,), (0.25,), ["a", "b", "c"])


    @mate.register_objective("plugin_half_ce")
    class HalfCE(nn.Module):
        def __init__(self, num_exits: int, feature_dim: int = 0, num_classes: int = 0, scale: float = 0.5):
            super().__init__()
            self.scale = scale

        def forward(self, outputs, targets, epoch=0.0):
            ce = torch.stack([nn.functional.cross_entropy(z, targets) for z in outputs.exit_logits])
            return self.scale * ce.sum(), {"ce": ce.detach()}


    def noise(root=None):
        g = torch.Generator().manual_seed(1)
        x, y = torch.randn(80, 3, 10, 10, generator=g), torch.arange(80) % 4
        train, test = TensorDataset(x[:60], y[:60]), TensorDataset(x[60:], y[60:])
        train.classes = ["w", "x", "y", "z"]
        return train, test
''')

TINY = ["data.val_size=30", "data.batch_size=30", "optim.epochs=1", "run.progress=false", "run.tensorboard=false"]


def run_mate(cwd, *args):
    """``python -m mate ARGS`` in a fresh interpreter started in ``cwd`` (where the plugin lies)."""
    return subprocess.run([sys.executable, "-m", "mate", *args], capture_output=True, text=True, cwd=cwd)


def test_a_plugin_module_registers_a_model_dataset_and_objective_that_train_from_the_cli(tmp_path):
    (tmp_path / "plugin_mod.py").write_text(PLUGIN)
    out = run_mate(tmp_path, "train", "--import", "plugin_mod", "data.name=plugin_blobs", "model.name=plugin_cnn",
                   "objective.name=plugin_half_ce", "objective.scale=0.25", *TINY, "run.name=plug")
    assert out.returncode == 0, out.stderr
    run = tmp_path / "runs" / "plug"
    results = json.loads((run / "results.json").read_text())
    assert len(results["test"]["exit_acc"]) == 3 and results["test"]["n"] == 60
    assert results["config"]["imports"] == ["plugin_mod"] and results["config"]["objective"]["scale"] == 0.25
    assert (run / "config.yaml").read_text().startswith("imports:\n- plugin_mod\n")
    # the checkpoint carries its imports: a fresh process evaluates it without --import
    ev = run_mate(tmp_path, "eval", str(run / "best.pt"), "--json")
    assert ev.returncode == 0, ev.stderr
    assert json.loads(ev.stdout)["test"]["exit_acc"] == results["test"]["exit_acc"]


def test_compare_workers_import_the_plugin_from_the_config(tmp_path):
    """Two pool worker processes train the runs; each imports the module the config names."""
    (tmp_path / "plugin_mod.py").write_text(PLUGIN)
    out = run_mate(tmp_path, "compare", "--import", "plugin_mod", "--methods", "ce,plugin_half_ce", "--seeds", "1",
                   "--workers", "2", "--out", "cmp", "data.name=plugin_blobs", "model.name=plugin_cnn", *TINY)
    assert out.returncode == 0, out.stderr
    assert "| plugin_half_ce |" in out.stdout
    for run in ("ce-s0", "plugin_half_ce-s0"):
        config = json.loads((tmp_path / "cmp" / "runs" / run / "results.json").read_text())["config"]
        assert config["imports"] == ["plugin_mod"] and config["model"]["name"] == "plugin_cnn"


def test_a_missing_module_is_one_line(tmp_path):
    out = run_mate(tmp_path, "train", "--import", "no_such_plugin_mod")
    assert out.returncode == 2
    assert out.stderr == (f"mate: error: --import: no module named 'no_such_plugin_mod' (searched sys.path and the "
                          f"current folder {tmp_path}; install it or add its folder to PYTHONPATH)\n")
    config = tmp_path / "c.yaml"
    config.write_text("imports: [no_such_plugin_mod]\n")
    out = run_mate(tmp_path, "train", "--config", str(config))
    assert out.returncode == 2 and out.stderr.startswith("mate: error: imports: no module named 'no_such_plugin_mod'")
    assert len(out.stderr.splitlines()) == 1


@pytest.fixture()
def user_module(tmp_path, monkeypatch):
    """``user_module(name, source)``: a module of the user's own, importable in this process (and
    forgotten again after the test)."""
    monkeypatch.syspath_prepend(str(tmp_path))

    def write(name: str, source: str) -> str:
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
        monkeypatch.delitem(sys.modules, name, raising=False)  # another test's module of that name
        importlib.invalidate_caches()
        return name

    yield write


def test_config_imports_errors(user_module):
    with pytest.raises(ConfigError, match=r"'imports' must be a list of module names .*got 'plugin'"):
        mate.Config.from_dict({"imports": "plugin"})
    name = user_module("dup_resnet", '''
        import mate

        @mate.register_model("resnet18")
        def resnet18(num_classes, in_channels, input_size):
            raise AssertionError("never built")
    ''')
    with pytest.raises(ConfigError, match=r"^model 'resnet18' is registered twice \(by mate.models.resnet.resnet18 "
                                          r"and dup_resnet.resnet18\); register yours under another name$"):
        load_config(None, [], imports=[name])
    broken = user_module("needs_missing_dep", "import no_such_dependency_mod\n")
    with pytest.raises(ConfigError, match="imports: importing module 'needs_missing_dep' failed: "
                                          "No module named 'no_such_dependency_mod'"):
        load_config(None, [], imports=[broken])


# -- data.name=python ------------------------------------------------------------------------------

FACTORIES = '''
    import torch
    from torch.utils.data import Dataset, Subset


    class Noisy(Dataset):
        """Class c: images of value c; each read adds fresh noise from torch's generator (an augmentation)."""

        classes = ["zero", "one", "two"]

        def __init__(self, n, offset=0):
            self.labels = [(i + offset) % 3 for i in range(n)]

        def __len__(self):
            return len(self.labels)

        def __getitem__(self, i):
            y = self.labels[i]
            return torch.full((3, 8, 8), float(y)) + 0.1 * torch.rand(3, 8, 8), y


    def train_test(root=None):
        torch.rand(5)  # a factory may draw from torch's generator
        return Subset(Noisy(64), list(range(60))), Noisy(20, offset=1)


    def train_val_test():
        return Noisy(60), Noisy(12, offset=2), Noisy(20, offset=1)


    def with_root(root):
        return Noisy(60), Noisy(16 if root == "data_here" else 1)


    def not_a_tuple():
        return Noisy(60)


    def uint8_images():
        class Raw(Noisy):
            def __getitem__(self, i):
                return torch.zeros(3, 8, 8, dtype=torch.uint8), 0
        return Raw(60), Raw(20)


    def no_classes():
        return torch.utils.data.TensorDataset(torch.zeros(60, 3, 8, 8), torch.zeros(60).long()), Noisy(20)


    def bad_label():
        test = Noisy(20)
        test.labels[7] = 3
        return Noisy(60), test
'''


def python_config(tmp_path, factory, *extra):
    return load_config(None, ["data.name=python", f"data.factory={factory}", "data.val_size=15", "data.batch_size=10",
                              "data.eval_batch_size=8", "data.num_workers=0", "model.width=4", "optim.epochs=1",
                              "run.progress=false", "run.tensorboard=false", f"run.out_dir={tmp_path}", *extra])


def test_python_dataset_trains_with_the_usual_split_rule(tmp_path, user_module):
    module = user_module("user_factories", FACTORIES)
    config = python_config(tmp_path, f"{module}:train_test", "run.name=py")
    results = train(config, log=lambda s: None)
    assert results["test"]["n"] == 20 and results["val"]["n"] == 15 and len(results["test"]["exit_acc"]) == 4
    # the hold-out is every dataset's: data.val_size training items drawn with data.split_seed, in split.json
    _, expected = validation_split(60, 15, 0)
    split = json.loads((tmp_path / "py" / "split.json").read_text())
    assert split == {"dataset": "python", "split_seed": 0, "val_indices": expected.tolist()}

    data = build_data(config.data, "cpu", seed=0)
    s = data.splits
    assert (s.class_names, s.num_classes, s.in_channels, s.input_size) == (["zero", "one", "two"], 3, 3, 8)
    assert s.mean is None and s.val is None
    x, y = next(iter(data.val))
    # the items as the dataset made them: value = label + noise in [0, 0.1), no normalisation on top
    assert x.shape == (8, 3, 8, 8) and torch.equal(x.floor().long()[:, 0, 0, 0], y)
    assert y.tolist() == [i % 3 for i in expected[:8].tolist()]


def test_python_dataset_reads_are_seeded(tmp_path, user_module):
    """A training epoch is fixed by (seed, epoch) and an evaluation by the items alone, whatever the
    transforms draw; building the data leaves torch's own generator where it was."""
    module = user_module("user_factories", FACTORIES)
    config = python_config(tmp_path, f"{module}:train_test")

    def epoch(seed, e):
        loader = build_data(config.data, "cpu", seed=seed).train
        loader.set_epoch(e)
        return torch.cat([x for x, _ in loader])

    assert torch.equal(epoch(0, 1), epoch(0, 1))
    assert not torch.equal(epoch(0, 1), epoch(0, 2)) and not torch.equal(epoch(0, 1), epoch(1, 1))
    test = build_data(config.data, "cpu").test
    assert torch.equal(torch.cat([x for x, _ in test]), torch.cat([x for x, _ in test]))
    torch.manual_seed(3)
    build_data(config.data, "cpu")
    after = torch.rand(4)
    torch.manual_seed(3)
    assert torch.equal(after, torch.rand(4))


def test_python_dataset_with_its_own_val_set_and_root(tmp_path, user_module):
    module = user_module("user_factories", FACTORIES)
    data = build_data(python_config(tmp_path, f"{module}:train_val_test").data, "cpu")
    # the factory's val set replaces the hold-out: every training item trains (6 batches of 10)
    assert data.val_indices.numel() == 0 and len(data.train) == 6
    assert torch.cat([y for _, y in data.val]).tolist() == [(i + 2) % 3 for i in range(12)]
    data = build_data(python_config(tmp_path, f"{module}:with_root", "data.root=data_here").data, "cpu")
    assert len(torch.cat([y for _, y in data.test])) == 16


@pytest.mark.parametrize("factory,error,match", [
    (None, DataError, r"data.name=python needs data.factory=package.module:function"),
    ("user_factories.train_test", ConfigError, r"data.factory='user_factories.train_test' must look like "
                                               r"package.module:function"),
    ("user_factories:nothing", ConfigError, r"module 'user_factories' has no attribute 'nothing'"),
    ("user_factories:not_a_tuple", DataError, r"returned a Noisy; it returns \(train, test\) or \(train, val, test\)"),
    ("user_factories:uint8_images", DataError, r"item 0 of the test set is \(Tensor\[3, 8, 8\] torch.uint8, int\)"),
    ("user_factories:no_classes", DataError, r"the train dataset has no 'classes'"),
    ("user_factories:bad_label", DataError, r"label 3 is not a class index; the train dataset names 3 classes"),
    ("user_factories:train_val_test|data.root=/x", DataError, r"data.root is set, so data.factory=user_factories:"
                                                             r"train_val_test is called with root=..."),
    ("user_factories:train_test|data.image_size=16", ConfigError, r"data.image_size=16: python holds 8x8 images"),
    ("user_factories:train_test|data.in_memory=true", ConfigError, r"data.in_memory=True: data.name=python streams"),
])
def test_python_dataset_errors_name_the_contract(tmp_path, user_module, factory, error, match):
    user_module("user_factories", FACTORIES)
    spec, *extra = (factory or "").split("|")
    overrides = ["data.name=python", "data.batch_size=10", "data.num_workers=0", "data.val_size=5", *extra]
    config = load_config(None, overrides + ([f"data.factory={spec}"] if spec else []))
    with pytest.raises(error, match=match):
        data = build_data(config.data, "cpu")
        for _ in data.test:  # labels are checked as the batches are read
            pass


def test_data_factory_belongs_to_python_datasets():
    with pytest.raises(ConfigError, match=r"^data.factory is read by data.name=python only \(data.name is "
                                          r"fashion_mnist\); remove it$"):
        build_data(load_config(None, ["data.factory=user_factories:train_test"]).data, "cpu")
