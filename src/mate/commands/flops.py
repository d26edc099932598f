"""``mate flops``: cumulative FLOPs and parameters of every exit, for a config or a checkpoint."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from ..config import load_config
from ..data import dataset_info
from ..engine import build_model, config_from_checkpoint
from ..evaluation import exit_costs, format_cost_table


def flops_command(source: str, overrides: Sequence[str] = (), as_json: bool = False) -> int:
    """``source``: a .pt file or run folder, a YAML file, or a shipped config name."""
    path = Path(source)
    if path.suffix == ".pt" or path.is_dir():
        config = config_from_checkpoint(path, overrides)
    else:
        config = load_config(source, overrides)
    d = config.data
    model = build_model(config, dataset_info(d), pretrained=False)  # the registered shape: no file is read
    costs = exit_costs(model)
    if as_json:
        print(json.dumps({"input_shape": list(costs.input_shape), "flops": costs.flops, "params": costs.params}))
        return 0
    shape = "x".join(map(str, costs.input_shape))
    print(f"{config.model['name']} on {d.name} (one {shape} input). FLOPs = 2 x multiply-accumulates, counted by "
          "torch.utils.flop_counter; F_k includes exits 1..k; training-only parts are not part of the model.")
    print(format_cost_table(costs))
    return 0
