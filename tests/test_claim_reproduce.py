"""scripts/claim_reproduce.py: retraining an archived run's first epochs gives its logged numbers."""
import json
import shutil

import torch
from conftest import load_script



claim_reproduce = load_script("claim_reproduce")


def test_flatten_and_differences_name_every_leaf_by_its_path():
    record = {"epoch": 1, "time": 3.2, "train": {"ce": [1.5, 2.0], "attention": [[0.25, 0.75]]}}
    assert claim_reproduce.flatten(record) == {"epoch": 1, "train.ce[0]": 1.5, "train.ce[1]": 2.0,
                                               "train.attention[0][0]": 0.25, "train.attention[0][1]": 0.75}
    other = {"epoch": 1, "time": 9.9, "train": {"ce": [1.5, 2.5], "attention": [[0.25, 0.75]]}, "val": {"a": 1}}
    assert claim_reproduce.differences(record, other) == [("train.ce[1]", 2.0, 2.5), ("val.a", None, 1)]
    line = claim_reproduce.describe("x-s0", 6, claim_reproduce.differences(record, other))
    assert line == "x-s0: 2 of 6 numbers differ (first: train.ce[1]: 2.0 then, 2.5 now); largest |difference| 0.5 at train.ce[1]"


def test_a_run_trained_today_is_reproduced_number_for_number_and_a_changed_number_is_found(
        tiny_config, tmp_path, capsys):
    from mate.engine import train

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the replay trains
    try:
        train(tiny_config(tmp_path / "runs", "mate", 2, **{"run.name": "m-s0", "data.train_subset": 512}),
              log=lambda s: None)
    finally:
        torch.set_num_threads(threads)
    archive = tmp_path / "archive"
    archive.mkdir()
    for name in ("config.yaml", "metrics.jsonl", "split.json"):
        (archive / "m-s0").mkdir(exist_ok=True)
        shutil.copy(tmp_path / "runs" / "m-s0" / name, archive / "m-s0" / name)
    torch.set_num_threads(2)
    try:
        assert claim_reproduce.main(["--names", "m", "--epochs", "2", "--archive", str(archive)]) == 0
        assert torch.get_num_threads() == 2  # the replay's one thread is not left behind
    finally:
        torch.set_num_threads(threads)
    assert capsys.readouterr().out.startswith("m-s0: identical (")

    metrics = archive / "m-s0" / "metrics.jsonl"
    records = [json.loads(line) for line in metrics.read_text().splitlines()]
    records[1]["train"]["attention"][2][3] += 1e-6  # one number of epoch 2, changed
    metrics.write_text("".join(json.dumps(r) + "\n" for r in records))
    assert claim_reproduce.main(["--names", "m", "--epochs", "2", "--archive", str(archive)]) == 1
    out = capsys.readouterr().out
    assert out.startswith("m-s0: 1 of ") and "epochs[1].train.attention[2][3]" in out
