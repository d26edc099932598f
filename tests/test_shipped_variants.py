"""Every shipped config loads, and every method of every shipped variants file makes a valid run
config from the base it is written for: a typo or an out-of-range value in one of the claim
protocol's trials stops here, not hours into a grid."""
from pathlib import Path

import pytest

from mate.config import load_config, yaml_load
from mate.errors import ConfigError
from mate.experiments.compare import MethodSpec, load_method_specs, run_config

CONFIGS = Path(__file__).parents[1] / "src" / "mate" / "configs"
# Variants files and the base config each is written for.
VARIANTS = {"methods": "fashion_mnist_bench", "claim_candidates": "fashion_mnist_claim",
            "main_job_precision": "fashion_mnist_quick"}


@pytest.mark.parametrize("name", sorted(p.stem for p in CONFIGS.glob("*.yaml") if p.stem not in VARIANTS))
def test_every_shipped_config_loads(name):
    assert load_config(name).objective["name"]


@pytest.mark.parametrize("variants,base", sorted(VARIANTS.items()))
def test_every_shipped_variant_makes_a_valid_run_config(variants, base, tmp_path):
    names = list(yaml_load((CONFIGS / f"{variants}.yaml").read_text()))
    assert len(names) >= 5
    base_config = load_config(base).to_dict()
    for spec in load_method_specs(names, variants):
        config = run_config(base_config, spec, seed=0, runs_dir=tmp_path)
        assert config.objective["name"] == spec.objective["name"] and config.run.name == f"{spec.name}-s0"


def test_a_variant_out_of_range_is_refused_when_its_run_config_is_made(tmp_path):
    base = load_config("fashion_mnist_claim").to_dict()
    with pytest.raises(ConfigError, match="kd_weight"):
        run_config(base, MethodSpec("byot_kd2", {"name": "byot", "kd_weight": 2.0}), seed=0, runs_dir=tmp_path)
