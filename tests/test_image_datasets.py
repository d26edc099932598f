"""Image-file datasets in their published layouts (tiny fake copies) and the streaming loader."""
import pytest
import torch
from PIL import Image

from fake_layouts import (make_cub, make_fgvc_aircraft, make_image_folder, make_stanford_dogs, make_tiny_imagenet,
                          write_image)
from mate.config import load_config
from mate.data import ImageFiles, InMemoryLoader, StreamingLoader, build_data, decode_to_memory, load_dataset
from mate.errors import DataError


def test_tiny_imagenet_layout(tmp_path):
    make_tiny_imagenet(tmp_path)
    s = load_dataset("tiny_imagenet", root=str(tmp_path))
    # classes are the sorted wnids; names come from words.txt
    assert s.class_names == ["goldfish, Carassius auratus", "European fire salamander", "bullfrog"]
    assert s.train.labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert all(f"/train/n0{y + 1}/images/" in p for p, y in zip(s.train.paths, s.train.labels.tolist()))
    # val_annotations.txt lists n02, n02, n01, n01, n03, n03: the official val images are the test set
    assert s.test.labels.tolist() == [1, 1, 0, 0, 2, 2]
    assert s.test.paths[2].endswith("val/images/val_2.JPEG")
    assert (s.num_classes, s.in_channels, s.input_size, s.val) == (3, 3, 64, None)


def test_cub_layout(tmp_path):
    make_cub(tmp_path)
    s = load_dataset("cub200", root=str(tmp_path))
    assert s.class_names == ["001.Black_footed_Albatross", "002.Laysan_Albatross", "003.Sooty_Albatross"]
    assert s.train.labels.tolist() == [0, 0, 1, 1, 2, 2] and s.test.labels.tolist() == [0, 1, 2]
    assert s.test.paths[1].endswith("images/002.Laysan_Albatross/Laysan_Albatross_0000_4.jpg")
    assert (s.num_classes, s.input_size) == (3, 224)


@pytest.mark.parametrize("compress", [True, False])
def test_stanford_dogs_layout(tmp_path, compress):
    pytest.importorskip("scipy")
    make_stanford_dogs(tmp_path, compress=compress)
    s = load_dataset("stanford_dogs", root=str(tmp_path))
    assert s.class_names == ["Chihuahua", "Japanese_spaniel", "Maltese_dog"]
    assert s.train.labels.tolist() == [0, 0, 1, 1, 2, 2] and s.test.labels.tolist() == [0, 1, 2]
    assert s.test.paths[2].endswith("Images/n02085936-Maltese_dog/n02085936_100.jpg")


def test_fgvc_aircraft_trains_on_train_and_val(tmp_path):
    make_fgvc_aircraft(tmp_path)
    s = load_dataset("fgvc_aircraft", root=str(tmp_path))
    assert s.class_names == ["707-320", "A300B4", "F/A-18"]  # variants.txt order, names with '/' kept
    assert s.train.labels.tolist() == [0, 0, 1, 1, 2, 2] + [0, 1, 2]  # train then val
    assert s.test.labels.tolist() == [0, 1, 2]
    assert s.test.paths[0].endswith("data/images/1000009.jpg")


def test_image_folder_val_is_test_without_a_test_folder(tmp_path):
    make_image_folder(tmp_path)
    s = load_dataset("image_folder", root=str(tmp_path))
    assert s.class_names == ["cat", "dog", "emu"] and s.val is None
    assert s.train.labels.tolist() == [0] * 6 + [1] * 6 + [2] * 6
    assert s.test.labels.tolist() == [0, 0, 1, 1, 2, 2] and "/val/" in s.test.paths[0]


def test_image_folder_with_a_test_folder_selects_on_val(tmp_path):
    make_image_folder(tmp_path, test=True)
    config = load_config(None, ["data.name=image_folder", f"data.root={tmp_path}", "data.batch_size=4",
                                "data.image_size=16", "data.num_workers=0", "data.in_memory=false"])
    data = build_data(config.data, torch.device("cpu"))
    assert data.val_indices.numel() == 0  # the dataset's own val/ replaces the hold-out (val_size ignored)
    assert len(data.train.files) == 18 and all("/val/" in p for p in data.val.files.paths)
    assert all("/test/" in p for p in data.test.files.paths)


def test_an_unknown_class_folder_is_named(tmp_path):
    make_image_folder(tmp_path)
    write_image(tmp_path / "val" / "yak" / "a.jpg", 0)
    with pytest.raises(DataError, match=r"class folder .*val/yak is not one of the training classes"):
        load_dataset("image_folder", root=str(tmp_path))


MISSING = [
    ("tiny_imagenet", make_tiny_imagenet, "tiny-imagenet-200/val/val_annotations.txt", "file"),
    ("tiny_imagenet", make_tiny_imagenet, "tiny-imagenet-200/wnids.txt", "file"),
    ("tiny_imagenet", make_tiny_imagenet, "tiny-imagenet-200/train/n03/images", "folder"),
    ("tiny_imagenet", make_tiny_imagenet, "tiny-imagenet-200/val/images/val_3.JPEG", "file"),
    ("cub200", make_cub, "CUB_200_2011/images.txt", "file"),
    ("cub200", make_cub, "CUB_200_2011/train_test_split.txt", "file"),
    ("cub200", make_cub, "CUB_200_2011/image_class_labels.txt", "file"),
    ("cub200", make_cub, "CUB_200_2011/classes.txt", "file"),
    ("cub200", make_cub, "CUB_200_2011/images", "folder"),
    ("stanford_dogs", make_stanford_dogs, "StanfordDogs/train_list.mat", "file"),
    ("stanford_dogs", make_stanford_dogs, "StanfordDogs/test_list.mat", "file"),
    ("stanford_dogs", make_stanford_dogs, "StanfordDogs/Images", "folder"),
    ("fgvc_aircraft", make_fgvc_aircraft, "fgvc-aircraft-2013b/data/variants.txt", "file"),
    ("fgvc_aircraft", make_fgvc_aircraft, "fgvc-aircraft-2013b/data/images_variant_train.txt", "file"),
    ("fgvc_aircraft", make_fgvc_aircraft, "fgvc-aircraft-2013b/data/images_variant_val.txt", "file"),
    ("fgvc_aircraft", make_fgvc_aircraft, "fgvc-aircraft-2013b/data/images_variant_test.txt", "file"),
    ("fgvc_aircraft", make_fgvc_aircraft, "fgvc-aircraft-2013b/data/images", "folder"),
    ("image_folder", make_image_folder, "train", "folder"),
    ("image_folder", make_image_folder, "val", "folder"),
]


@pytest.mark.parametrize("name,make,relative,kind", MISSING, ids=[m[2] for m in MISSING])
def test_a_missing_file_or_folder_is_named(tmp_path, name, make, relative, kind):
    if name == "stanford_dogs":
        pytest.importorskip("scipy")
    make(tmp_path)
    target = tmp_path / relative
    if target.is_dir():
        import shutil

        shutil.rmtree(target)
    else:
        target.unlink()
    with pytest.raises(DataError, match=f"missing {kind} {target}"):
        load_dataset(name, root=str(tmp_path))


def test_no_dataset_folder_at_all_says_where_to_point(tmp_path):
    with pytest.raises(DataError, match="missing folder .*nowhere.*data.root to the folder that holds 'CUB_200_2011'"):
        load_dataset("cub200", root=str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match="image_folder needs data.root"):
        load_dataset("image_folder", root=None)


# -- the streaming loader ---------------------------------------------------------------------

def _solid_files(tmp_path, n=10, size=(20, 30)):
    """n solid-colour images: image i has every pixel equal to (10 i, 10 i + 1, 10 i + 2)."""
    paths = []
    for i in range(n):
        path = tmp_path / f"{i}.png"
        Image.new("RGB", size[::-1], (10 * i, 10 * i + 1, 10 * i + 2)).save(path)
        paths.append(str(path))
    return ImageFiles(paths, torch.arange(n) % 3)


def _loader(files, **kw):
    args = dict(batch_size=4, device="cpu", mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), image_size=8,
                num_workers=0)
    return StreamingLoader(files, **{**args, **kw})


def test_eval_batches_are_exactly_normalised_in_order_with_the_last_partial_batch(tmp_path):
    files = _solid_files(tmp_path)
    batches = list(_loader(files))
    assert [len(y) for _, y in batches] == [4, 4, 2] and len(_loader(files)) == 3
    x = torch.cat([b[0] for b in batches])
    assert x.shape == (10, 3, 8, 8) and torch.cat([b[1] for b in batches]).tolist() == files.labels.tolist()
    expected = (torch.tensor([[10 * i, 10 * i + 1, 10 * i + 2] for i in range(10)]) - 127.5) / 63.75
    assert torch.allclose(x[:, :, 3, 5], expected)  # solid images stay solid through resize and crop


def test_training_epochs_are_seeded_and_drop_the_last_batch(tmp_path):
    files = _solid_files(tmp_path)
    loader = _loader(files, train=True, flip=True, seed=3)
    loader.set_epoch(1)
    first = list(loader)
    again = list(loader)
    assert len(first) == len(loader) == 2
    for (x1, y1), (x2, y2) in zip(first, again):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)
    labels = torch.cat([y for _, y in first])
    # a solid image's value names it: each image at most once per epoch
    ids = torch.round(torch.cat([x for x, _ in first])[:, 0, 0, 0] * 63.75 + 127.5).long() // 10
    assert len(set(ids.tolist())) == 8 and labels.tolist() == (ids % 3).tolist()
    loader.set_epoch(2)
    assert not all(torch.equal(a[1], b[1]) for a, b in zip(first, loader))


def test_each_rank_gets_its_slice_of_every_global_batch_whatever_the_workers(tmp_path):
    files = _solid_files(tmp_path, size=(30, 40))
    single = list(_loader(files, train=True, flip=True, seed=1))
    ranks = [list(_loader(files, train=True, flip=True, seed=1, rank=r, world_size=2, num_workers=2 * r))
             for r in range(2)]
    for step, (x, y) in enumerate(single):
        assert torch.equal(torch.cat([ranks[0][step][0], ranks[1][step][0]]), x)
        assert torch.equal(torch.cat([ranks[0][step][1], ranks[1][step][1]]), y)
    # a last evaluation batch smaller than the number of processes leaves a rank an empty batch
    tail = [list(_loader(ImageFiles(files.paths[:5], files.labels[:5]), rank=r, world_size=4)) for r in range(4)]
    assert [[len(y) for _, y in t] for t in tail] == [[1, 0], [1, 0], [1, 0], [1, 1]]


def test_an_unreadable_image_is_named(tmp_path):
    files = _solid_files(tmp_path, n=4)
    open(files.paths[2], "wb").write(b"not an image")
    with pytest.raises(DataError, match=f"cannot read image {files.paths[2]}"):
        list(_loader(files, num_workers=1))


def test_decode_to_memory_resizes_and_keeps_labels(tmp_path):
    files = _solid_files(tmp_path, n=5)
    data = decode_to_memory(files, 6, num_workers=0, batch_size=2)
    assert data.images.shape == (5, 3, 6, 6) and data.images.dtype == torch.uint8
    assert data.images[4, :, 2, 2].tolist() == [40, 41, 42] and data.labels.tolist() == files.labels.tolist()


def test_in_memory_auto_keeps_small_images_in_memory_and_streams_large_ones(tmp_path):
    make_tiny_imagenet(tmp_path)
    make_cub(tmp_path)
    common = ["data.val_size=2", "data.batch_size=4", "data.num_workers=0"]
    tin = build_data(load_config(None, ["data.name=tiny_imagenet", f"data.root={tmp_path}", *common]).data, "cpu")
    assert isinstance(tin.train, InMemoryLoader) and tin.train.images.shape == (10, 3, 64, 64)
    assert tin.splits.input_size == 64 and len(tin.val.labels) == 2 and len(tin.test.labels) == 6
    cub = build_data(load_config(None, ["data.name=cub200", f"data.root={tmp_path}", *common]).data, "cpu")
    assert isinstance(cub.train, StreamingLoader) and cub.splits.input_size == 224
    small = build_data(load_config(None, ["data.name=cub200", f"data.root={tmp_path}", "data.image_size=32",
                                          *common]).data, "cpu")
    assert isinstance(small.train, InMemoryLoader) and small.splits.input_size == 32
    x, _ = next(iter(small.test))
    assert x.shape == (3, 3, 32, 32)


def test_registered_shape_of_image_file_datasets_and_image_folder(tmp_path):
    from mate.config import DataConfig
    from mate.data import DatasetInfo, dataset_info

    assert dataset_info(DataConfig(name="cub200")) == DatasetInfo(200, 3, 224, image_files=True)
    assert dataset_info(DataConfig(name="tiny_imagenet", image_size=32)) == DatasetInfo(200, 3, 32, image_files=True)
    assert dataset_info(DataConfig(name="stanford_dogs")).num_classes == 120
    assert dataset_info(DataConfig(name="fgvc_aircraft")).num_classes == 100
    # image_folder's classes are its folders: they are listed (no image is decoded)
    make_image_folder(tmp_path)
    assert dataset_info(DataConfig(name="image_folder", root=str(tmp_path), image_size=48)) == DatasetInfo(
        3, 3, 48, image_files=True)


def test_eval_crop_is_refused_for_image_files_decoded_into_memory(tmp_path):
    from mate.errors import ConfigError

    make_tiny_imagenet(tmp_path)
    common = ["data.name=tiny_imagenet", f"data.root={tmp_path}", "data.val_size=2", "data.batch_size=4",
              "data.num_workers=0", "data.eval_crop=0.5"]
    with pytest.raises(ConfigError, match=r"^data.eval_crop=0.5 applies to streamed evaluation only: tiny_imagenet "
                                          r"is held in memory here and evaluated on whole images; stream it with "
                                          r"data.in_memory=false to evaluate on center crops$"):
        build_data(load_config(None, common).data, "cpu")
    streamed = build_data(load_config(None, [*common, "data.in_memory=false"]).data, "cpu")
    assert streamed.test.images.transform.transforms[0].size == [128]  # resize to 64 / 0.5, then crop 64


def test_shipped_image_folder_config_trains_then_budget_and_export(tmp_path, capsys):
    """The README's one command for a folder of your own: train with image_folder_quick, then the
    budget plot and the ONNX export of the trained run (one tiny epoch here)."""
    import json

    from mate.cli import main

    make_image_folder(tmp_path / "photos", per_class=(8, 3, 3), test=True)
    config = load_config("image_folder_quick", [f"data.root={tmp_path / 'photos'}"])
    assert (config.data.name, config.data.image_size, config.data.flip) == ("image_folder", 64, False)
    run = tmp_path / "runs" / "photos"
    assert main(["train", "--config", "image_folder_quick", f"data.root={tmp_path / 'photos'}", "run.name=photos",
                 f"run.out_dir={tmp_path / 'runs'}", "optim.epochs=1", "data.batch_size=8", "data.num_workers=0",
                 "run.progress=false", "run.tensorboard=false"]) == 0
    results = json.loads((run / "results.json").read_text())
    # val/ selects (test/ exists), test/ is the test set: 3 images of each of the 3 classes in each
    assert results["val"]["n"] == 9 and results["test"]["n"] == 9 and len(results["test"]["exit_acc"]) == 4
    assert main(["budget", str(run / "best.pt"), "--out", str(run / "budget")]) == 0
    assert main(["export", str(run / "best.pt"), "--threshold", "0.9", "--out", str(run / "export")]) == 0
    assert (run / "budget" / "budget.png").stat().st_size > 0
    manifest = json.loads((run / "export" / "manifest.json").read_text())
    assert manifest["input_shape"] == [3, 64, 64] and manifest["class_names"] == ["cat", "dog", "emu"]
    assert manifest["thresholds"] == pytest.approx([0.9, 0.9, 0.9])  # stored as float32
    capsys.readouterr()


# -- one home for opening image files, and image_folder's own checks -----------------------------

def bomb_png(path, side=20000):
    """A PNG whose header claims side x side pixels (over twice PIL's limit); its data is one row."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 8))
                     + chunk(b"IEND", b""))
    return path


def test_16_bit_images_are_scaled_by_their_bit_depth(tmp_path):
    import numpy as np

    from mate.data.image_folder import open_image

    grey = (np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16)  # 0 .. 65520
    Image.fromarray(grey).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode == "I;16"
    expected = np.round(grey / 257).astype(np.uint8)  # 65535 -> 255
    assert np.array_equal(np.asarray(open_image(tmp_path / "g16.png", "L")), expected)
    rgb = np.asarray(open_image(tmp_path / "g16.png", "RGB"))
    assert rgb.shape == (64, 64, 3) and all(np.array_equal(rgb[..., c], expected) for c in range(3))
    eight = np.arange(256, dtype=np.uint8).reshape(16, 16)  # 8-bit images are unchanged
    Image.fromarray(eight).save(tmp_path / "g8.png")
    assert np.array_equal(np.asarray(open_image(tmp_path / "g8.png", "L")), eight)


def test_a_decompression_bomb_is_one_clear_error(tmp_path):
    from mate.data.image_folder import open_image

    path = bomb_png(tmp_path / "bomb.png")
    with pytest.raises(DataError, match=r"^cannot read image .*bomb.png: 400000000 pixels, more than PIL's "
                                        r"decompression-bomb limit"):
        open_image(path, "RGB")
    with pytest.raises(DataError, match="cannot read image .*bomb.png"):
        decode_to_memory(ImageFiles([str(path)], torch.tensor([0])), 8, num_workers=0)


def test_training_reads_16_bit_images_as_predict_does(tmp_path):
    import numpy as np

    grey = np.full((12, 12), 40000, dtype=np.uint16)
    Image.fromarray(grey).save(tmp_path / "a.png")
    data = decode_to_memory(ImageFiles([str(tmp_path / "a.png")], torch.tensor([0])), 12, num_workers=0)
    assert data.images.unique().tolist() == [round(40000 / 257)]


def test_an_empty_class_folder_is_refused(tmp_path):
    make_image_folder(tmp_path)
    (tmp_path / "train" / "fox").mkdir()
    with pytest.raises(DataError, match=r"^image_folder: the class folder .*train/fox holds no image files "
                                        r"\(.jpg, .jpeg, .png"):
        load_dataset("image_folder", root=str(tmp_path))


def test_a_single_class_is_refused(tmp_path):
    make_image_folder(tmp_path, classes=("cat",))
    with pytest.raises(DataError, match=r"^image_folder: .*train has one class folder \(cat\); a classifier needs "
                                        r"at least two"):
        load_dataset("image_folder", root=str(tmp_path))


def square_folder(root, side=20, classes=("cat", "dog"), per_class=(3, 2)):
    for split, n in zip(("train", "val"), per_class):
        for c in classes:
            for i in range(n):
                write_image(root / split / c / f"{c}_{i}.png", i, size=(side, side), fmt="PNG")
    return root


def test_image_folder_default_size_is_the_images_own_when_they_share_one(tmp_path):
    s = load_dataset("image_folder", root=str(square_folder(tmp_path)))
    assert s.image_size == 20
    assert s.extra["image_size_note"] == ("data.image_size unset: 20 px, the size all 6 training images share "
                                          "(set data.image_size to choose another)")


def test_image_folder_default_size_is_224_for_mixed_or_large_images(tmp_path):
    make_image_folder(tmp_path / "mixed")  # heights 32..37, width 36
    s = load_dataset("image_folder", root=str(tmp_path / "mixed"))
    assert s.image_size == 224
    assert s.extra["image_size_note"] == ("data.image_size unset: 224 px, because the training images have several "
                                          "sizes (e.g. 36x32 and 36x33); set data.image_size=N to train at N x N")
    s = load_dataset("image_folder", root=str(square_folder(tmp_path / "large", side=240)))
    assert s.image_size == 224
    assert "224 px, because the training images (240x240) are larger" in s.extra["image_size_note"]
    config = load_config(None, ["data.name=image_folder", f"data.root={tmp_path / 'mixed'}", "data.image_size=16",
                                "data.num_workers=0", "data.val_size=2", "data.batch_size=2"])
    assert build_data(config.data, "cpu").splits.input_size == 16  # a set data.image_size wins


def test_num_workers_default_follows_the_usable_cpus(monkeypatch, tmp_path):
    import os
    import warnings

    from mate.config import DataConfig
    from mate.data.build import resolve_num_workers

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert DataConfig().num_workers is None and resolve_num_workers(None) == 2 and resolve_num_workers(3) == 3
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)), raising=False)
    assert resolve_num_workers(None) == 4
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    config = load_config(None, ["data.name=image_folder", f"data.root={square_folder(tmp_path)}",
                                "data.in_memory=false", "data.val_size=2", "data.batch_size=2"])
    data = build_data(config.data, "cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # PyTorch warns when a DataLoader has more workers than usable CPUs
        assert sum(len(y) for _, y in data.test) == 4
    assert data.test.num_workers == 2
