import pytest

import mate
from mate.config import Config, OptimConfig, RunConfig, config_to_yaml, load_config
from mate.engine import Trainer
from mate.errors import ConfigError
from mate.experiments.sweep import parse_grid


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
    ("model.name=[1, 2]", r"^config key 'model.name' must be a string, got \[1, 2\]$"),
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


# -- ranges: each option declares its valid range once (mate.options), and loading checks it -------------
@pytest.mark.parametrize("overrides, message", [
    (["optim.epochs=0"], "config key 'optim.epochs' must be >= 1, got 0"),
    (["optim.epochs=-1"], "config key 'optim.epochs' must be >= 1, got -1"),
    (["optim.lr=-0.1"], "config key 'optim.lr' must be >= 0, got -0.1"),
    (["optim.momentum=-0.9"], "config key 'optim.momentum' must be in [0, 1], got -0.9"),
    (["optim.weight_decay=-5e-4"], "config key 'optim.weight_decay' must be >= 0, got -0.0005"),
    (["optim.warmup_epochs=-1"], "config key 'optim.warmup_epochs' must be >= 0, got -1.0"),
    (["optim.milestones=[75, -1]"], "config key 'optim.milestones[1]' must be >= 0, got -1"),
    (["data.val_size=-5"], "config key 'data.val_size' must be >= 0, got -5"),
    (["data.test_subset=0"], "config key 'data.test_subset' must be >= 1, got 0"),
    (["data.train_subset=-1"], "config key 'data.train_subset' must be >= 1, got -1"),
    (["data.crop_padding=-1"], "config key 'data.crop_padding' must be >= 0, got -1"),
    (["data.eval_crop=0"], "config key 'data.eval_crop' must be in (0, 1], got 0.0"),
    (["model.width=0"], "config key 'model.width' must be >= 1, got 0"),
    (["model.name=wrn16_4", "model.dropout=1"], "config key 'model.dropout' must be in [0, 1), got 1.0"),
    (["objective.kd_weight=-1"], "config key 'objective.kd_weight' must be >= 0, got -1.0"),
    (["objective.rampup_epochs=-2"], "config key 'objective.rampup_epochs' must be >= 0, got -2.0"),
    (["objective.primary_share=1.5"], "config key 'objective.primary_share' must be in [0, 1], got 1.5"),
    (["objective.proj_dim=0"], "config key 'objective.proj_dim' must be >= 1, got 0"),
    (["objective.name=byot", "objective.kd_weight=-0.1"],
     "config key 'objective.kd_weight' must be in [0, 1], got -0.1"),
    (["objective.name=sdn", "objective.rampup_epochs=-1"],
     "config key 'objective.rampup_epochs' must be >= 0, got -1.0"),
    (["objective.name=sdn", "objective.exit_weights=[0.5, -1]"],
     "config key 'objective.exit_weights[1]' must be >= 0, got -1.0"),
    (["objective.name=phuong", "objective.temperature_growth=0.9"],
     "config key 'objective.temperature_growth' must be >= 1, got 0.9"),
    # infinity and NaN are in no range
    (["optim.lr=.inf"], "config key 'optim.lr' must be a finite number >= 0, got inf"),
    (["objective.primary_share=.nan"],
     "config key 'objective.primary_share' must be a finite number in [0, 1], got nan"),
    (["objective.temperature=-.inf"], "config key 'objective.temperature' must be a finite number > 0, got -inf"),
])
def test_values_out_of_range_name_the_key_and_the_range(overrides, message):
    with pytest.raises(ConfigError) as info:
        load_config(None, overrides)
    assert str(info.value) == message


def test_ranges_hold_for_models_and_objectives_built_from_python():
    with pytest.raises(ConfigError, match=r"^config key 'model.width' must be >= 1, got 0$"):
        mate.create_model("resnet18", num_classes=10, width=0)
    with pytest.raises(ConfigError, match=r"^config key 'objective.kd_weight' must be >= 0, got -1.0$"):
        mate.create_objective("mate", num_exits=4, feature_dim=16, kd_weight=-1.0)
    with pytest.raises(ConfigError, match=r"^config key 'objective.detach_policy' must be one of 'd2', 'd1', "
                                          r"got 'd3'$"):
        mate.create_objective("mate", num_exits=4, feature_dim=16, detach_policy="d3")


def test_the_trainer_checks_a_config_built_in_code(tmp_path):
    config = Config(optim=OptimConfig(epochs=-1), run=RunConfig(out_dir=str(tmp_path / "runs")))
    with pytest.raises(ConfigError, match=r"^config key 'optim.epochs' must be >= 1, got -1$"):
        Trainer(config, log=lambda line: None)
    assert not (tmp_path / "runs").exists()


def test_list_options_are_checked_as_lists():
    """A string where a list of stage numbers or weights belongs is refused, not passed on."""
    with pytest.raises(ConfigError, match=r"^config key 'model.exit_stages' must be a list, got 'abc'$"):
        load_config(None, ["model.exit_stages=abc"])
    with pytest.raises(ConfigError, match=r"^config key 'objective.exit_weights' must be a list, got 5$"):
        load_config(None, ["objective.name=sdn", "objective.exit_weights=5"])


# -- numbers: every float spelling, in files and overrides ------------------------------------------------
@pytest.mark.parametrize("text, value", [
    ("5e-4", 5e-4), ("5E-4", 5e-4), ("1e3", 1000.0), ("+1e-3", 1e-3), ("1.0e3", 1000.0), ("2.5e+2", 250.0),
    (".5e1", 5.0), (".5", 0.5), ("1.", 1.0), ("1_000.0", 1000.0), ("1", 1.0),
])
def test_every_float_spelling_is_a_number(tmp_path, text, value):
    assert load_config(None, [f"optim.lr={text}"]).optim.lr == value
    path = tmp_path / "c.yaml"
    path.write_text(f"optim:\n  lr: {text}\nobjective:\n  temperature: {text}\n")
    cfg = load_config(path)
    assert cfg.optim.lr == value and cfg.objective["temperature"] == value


def test_an_exponent_is_a_float_in_overrides_and_grids():
    with pytest.raises(ConfigError, match=r"^config key 'optim.epochs' must be an integer, got 1000.0$"):
        load_config(None, ["optim.epochs=1e3"])
    assert parse_grid(["optim.lr=5e-4,1E-3"]) == {"optim.lr": [5e-4, 1e-3]}


def test_a_string_that_reads_as_a_number_survives_the_round_trip(tmp_path):
    cfg = load_config(None, ["run.name='1e3'", "data.root='5E-4'"])
    assert cfg.run.name == "1e3" and cfg.data.root == "5E-4"
    path = tmp_path / "config.yaml"
    path.write_text(config_to_yaml(cfg))
    assert load_config(path) == cfg


def test_yaml_errors_are_one_line(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(None, ["optim.milestones=[1,"])
    assert str(info.value) == ("override 'optim.milestones=[1,': cannot parse the value (expected the node "
                               "content, but found '<stream end>' at line 1, column 4)")
    bad = tmp_path / "bad.yaml"
    bad.write_text("data:\n  val_size: 1\n batch_size: 2\n")
    with pytest.raises(ConfigError) as info:
        load_config(bad)
    assert str(info.value) == (f"config file {bad} is not valid YAML: expected <block end>, but found "
                               "'<block mapping start>' at line 3, column 2")


def test_an_integer_too_large_for_a_float_is_refused_where_a_float_belongs():
    digits = "9" * 400
    with pytest.raises(ConfigError) as info:
        load_config(None, [f"optim.lr={digits}"])
    assert str(info.value) == f"config key 'optim.lr' must be a finite number, got {digits}"
