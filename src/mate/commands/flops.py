"""``mate flops``: cumulative FLOPs (and MACs) and parameters of every exit, for a config or a checkpoint."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from ..config import load_config
from ..data import DatasetInfo, dataset_info
from ..engine import build_model, config_from_checkpoint, load_checkpoint
from ..evaluation import exit_costs, format_cost_table


def flops_command(source: str, overrides: Sequence[str] = (), as_json: bool = False) -> int:
    """``source``: a .pt file or run folder, a YAML file, or a shipped config name."""
    path = Path(source)
    if path.suffix == ".pt" or path.is_dir():
        state = load_checkpoint(path)
        config = config_from_checkpoint(state, overrides)
        if "input_shape" in state:  # the input the network was trained on: no data file is read
            channels, side, _ = state["input_shape"]
            info = DatasetInfo(int(state["num_classes"]), int(channels), int(side))
        else:  # a checkpoint written before checkpoints held their input shape
            info = dataset_info(config.data)
    else:
        config = load_config(source, overrides)
        info = dataset_info(config.data)
    model = build_model(config, info, pretrained=False)  # only the architecture counts: no weight file is read
    costs = exit_costs(model)
    if as_json:
        print(json.dumps({"input_shape": list(costs.input_shape), "flops": costs.flops,
                          "macs": [f // 2 for f in costs.flops], "params": costs.params}))
        return 0
    shape = "x".join(map(str, costs.input_shape))
    print(f"{config.model['name']} on {config.data.name} (one {shape} input). FLOPs = 2 x multiply-accumulates "
          "(MACs), counted by torch.utils.flop_counter; F_k includes exits 1..k; training-only parts are not part "
          "of the model.")
    print(format_cost_table(costs))
    return 0
