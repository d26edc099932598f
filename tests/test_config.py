import pytest

from mate.config import Config, load_config
from mate.errors import ConfigError


def test_defaults_and_overrides():
    cfg = load_config(None, ["optim.lr=0.05", "model.width=16", "objective.primary_share=0.9",
                             "optim.milestones=[1, 2]", "data.root=/tmp/x"])
    assert cfg.optim.lr == 0.05 and cfg.model == {"name": "resnet18", "width": 16}
    assert cfg.objective["primary_share"] == 0.9 and cfg.optim.milestones == [1, 2]
    assert cfg.data.root == "/tmp/x"


def test_int_is_accepted_for_float_and_round_trips():
    cfg = load_config(None, ["optim.lr=1"])
    assert cfg.optim.lr == 1.0 and isinstance(cfg.optim.lr, float)
    assert Config.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize("override,match", [
    ("optim.learning_rate=0.1", "unknown config key 'optim.learning_rate'"),
    ("optim.lr=fast", "'optim.lr' must be a number"),
    ("optim.epochs=2.5", "'optim.epochs' must be an integer"),
    ("data.flip=maybe", "'data.flip' must be true or false"),
    ("optim.schedule=linear", "'optim.schedule' must be one of"),
    ("objective.gamma=0.7", "unknown config key 'objective.gamma' for objective 'mate'"),
    ("model.depth=18", "unknown config key 'model.depth' for model 'resnet18'"),
    ("model.num_classes=10", "'model.num_classes' is set from the data"),
    ("objective.temperature=[1]", "'objective.temperature' must be a number"),
    ("model.name=resnet19", "unknown model 'resnet19'"),
    ("training.epochs=3", "unknown config section 'training'"),
    ("epochs=3", "must be section.key"),
    ("optim.lr", "must look like section.key=value"),
])
def test_config_errors_name_the_key(override, match):
    with pytest.raises(ConfigError, match=match):
        load_config(None, [override])


def test_changing_objective_name_drops_the_old_options(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("objective:\n  name: mate\n  primary_share: 0.9\n")
    assert load_config(path, ["objective.name=ce"]).objective == {"name": "ce"}


def test_yaml_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


@pytest.mark.parametrize("name", ["fashion_mnist_quick", "cifar100_resnet18", "cifar100_resnet50"])
def test_shipped_configs_validate(name):
    from pathlib import Path

    path = Path(__file__).parents[1] / "configs" / f"{name}.yaml"
    cfg = load_config(path)
    assert cfg.objective["name"] == "mate"


def test_shipped_config_by_name():
    cfg = load_config("cifar100_resnet18", ["data.root=/data"])
    assert cfg.data.name == "cifar100" and cfg.model["width"] == 64 and cfg.optim.milestones == [75, 130, 180]
    with pytest.raises(ConfigError, match="shipped configs: .*fashion_mnist_quick"):
        load_config("no_such_config")
