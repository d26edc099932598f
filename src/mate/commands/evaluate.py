"""``mate eval``: per-exit and ensemble accuracy of a checkpoint."""
from __future__ import annotations

import json
from typing import Literal, Sequence

from ..engine import load_trained
from ..evaluation import collect_exit_logits, format_exit_table
from .common import checkpoint_line


def eval_command(checkpoint: str, split: Literal["test", "val", "both"] = "test", as_json: bool = False,
                 overrides: Sequence[str] = ()) -> int:
    trained = load_trained(checkpoint, overrides)
    data = trained.data
    rows = {}
    if split in ("val", "both") and data.val is not None:
        rows["val"] = collect_exit_logits(trained.model, data.val).summary()
    if split in ("test", "both"):
        rows["test"] = collect_exit_logits(trained.model, data.test).summary()
    if as_json:
        print(json.dumps(rows, indent=2))
    else:
        print(checkpoint_line(checkpoint, trained))
        print(format_exit_table(rows))
    return 0
