"""Tiny copies of the published dataset layouts, written with real file formats."""
from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
from PIL import Image


def write_image(path: Path, seed: int, size=(40, 48), fmt: str = "JPEG") -> None:
    """A small image whose colour depends on ``seed`` (sizes vary, as in the real sets)."""
    rng = np.random.default_rng(seed)
    h, w = size
    pixels = (rng.integers(0, 256, (1, 1, 3)) + rng.integers(-20, 20, (h, w, 3))).clip(0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, format=fmt)


def make_image_folder(root: Path, classes=("cat", "dog", "emu"), per_class=(6, 2, 2), test: bool = False) -> Path:
    """root/train|val[|test]/<class>/*.jpg|png with per_class images in each split."""
    seed = 0
    for split, n in zip(("train", "val", "test"), per_class):
        if split == "test" and not test:
            continue
        for c in classes:
            for i in range(n):
                fmt = "PNG" if i % 2 else "JPEG"
                write_image(root / split / c / f"{c}_{i}.{fmt.lower().replace('jpeg', 'jpg')}", seed, fmt=fmt,
                            size=(32 + i, 36))
                seed += 1
    return root


def make_tiny_imagenet(root: Path, wnids=("n02", "n01", "n03"), train_per_class=4, val_per_class=2) -> Path:
    base = root / "tiny-imagenet-200"
    base.mkdir(parents=True)
    (base / "wnids.txt").write_text("".join(f"{w}\n" for w in wnids))
    (base / "words.txt").write_text("n01\tgoldfish, Carassius auratus\nn02\tEuropean fire salamander\n"
                                    "n03\tbullfrog\nn09\tunused synset\n")
    for w in wnids:
        for i in range(train_per_class):
            write_image(base / "train" / w / "images" / f"{w}_{i}.JPEG", hash((w, i)) % 1000, size=(64, 64))
        (base / "train" / w / f"{w}_boxes.txt").write_text("")
    lines, k = [], 0
    for w in wnids:
        for _ in range(val_per_class):
            write_image(base / "val" / "images" / f"val_{k}.JPEG", 500 + k, size=(64, 64))
            lines.append(f"val_{k}.JPEG\t{w}\t0\t0\t63\t63\n")
            k += 1
    (base / "val" / "val_annotations.txt").write_text("".join(lines))
    write_image(base / "test" / "images" / "test_0.JPEG", 999, size=(64, 64))
    return base


def make_cub(root: Path, classes=("001.Black_footed_Albatross", "002.Laysan_Albatross", "003.Sooty_Albatross"),
             per_class=3) -> Path:
    """Image i of each class is a test image when i == 0, a training image otherwise."""
    base = root / "CUB_200_2011"
    images, split, labels = [], [], []
    image_id = 1
    for c, name in enumerate(classes, 1):
        for i in range(per_class):
            rel = f"{name}/{name.split('.')[1]}_{i:04d}_{image_id}.jpg"
            write_image(base / "images" / rel, image_id)
            images.append(f"{image_id} {rel}\n")
            split.append(f"{image_id} {0 if i == 0 else 1}\n")
            labels.append(f"{image_id} {c}\n")
            image_id += 1
    (base / "images.txt").write_text("".join(images))
    (base / "train_test_split.txt").write_text("".join(split))
    (base / "image_class_labels.txt").write_text("".join(labels))
    (base / "classes.txt").write_text("".join(f"{c} {name}\n" for c, name in enumerate(classes, 1)))
    return base


DOG_BREEDS = ("n02085620-Chihuahua", "n02085782-Japanese_spaniel", "n02085936-Maltese_dog")


def make_stanford_dogs(root: Path, breeds=DOG_BREEDS, per_class=3, compress: bool = True) -> Path:
    """Images/<breed>/*.jpg and the MATLAB lists; image 0 of each breed is a test image."""
    from scipy.io import savemat

    base = root / "StanfordDogs"
    lists = {"train": ([], []), "test": ([], [])}
    for label, breed in enumerate(breeds, 1):
        for i in range(per_class):
            rel = f"{breed}/{breed.split('-')[0]}_{100 + i}.jpg"
            write_image(base / "Images" / rel, label * 10 + i)
            files, labels = lists["test" if i == 0 else "train"]
            files.append(rel)
            labels.append(label)
    for split, (files, labels) in lists.items():
        cells = np.empty((len(files), 1), dtype=object)
        for i, f in enumerate(files):
            cells[i, 0] = np.array([f])
        annotations = np.empty((len(files), 1), dtype=object)
        for i, f in enumerate(files):
            annotations[i, 0] = np.array([f[:-4]])
        savemat(base / f"{split}_list.mat", {"file_list": cells, "annotation_list": annotations,
                                             "labels": np.array(labels, dtype=np.float64)[:, None]},
                do_compression=compress)
    return base


def make_fgvc_aircraft(root: Path, variants=("707-320", "A300B4", "F/A-18"), per_split=(2, 1, 1)) -> Path:
    base = root / "fgvc-aircraft-2013b"
    data = base / "data"
    (data).mkdir(parents=True)
    (data / "variants.txt").write_text("".join(f"{v}\n" for v in variants))
    image_id = 1000000
    for split, n in zip(("train", "val", "test"), per_split):
        lines = []
        for v in variants:
            for _ in range(n):
                write_image(data / "images" / f"{image_id}.jpg", image_id % 997, size=(50, 60))
                lines.append(f"{image_id} {v}\n")
                image_id += 1
        (data / f"images_variant_{split}.txt").write_text("".join(lines))
    return base


def write_idx(path: Path, array, gz: bool = True) -> Path:
    """An IDX file of unsigned bytes (the MNIST format): magic 0x0000 0x08 ndim, big-endian sizes, raw data."""
    array = np.asarray(array, dtype=np.uint8)
    raw = struct.pack(">HBB", 0, 8, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()
    with (gzip.open(path, "wb", compresslevel=1) if gz else open(path, "wb")) as f:
        f.write(raw)
    return path


def learnable_images(n: int, seed: int, num_classes: int = 10, side: int = 28) -> tuple[np.ndarray, np.ndarray]:
    """``n`` grey images whose class shows in their pattern, and balanced labels.

    Class c is a fixed smooth pattern (the same for every seed), drawn at a random shift of up to
    3 pixels and a random contrast, blended with another class's pattern and covered in noise.
    As on Fashion-MNIST, the exits of a width-8 ResNet-18 trained for three epochs on 2,048 of
    them are far above chance and far from perfect, from about 60% at the first to 90% at the last.
    """
    patterns = np.random.default_rng(1234).normal(size=(num_classes, side + 6, side + 6))
    # smooth each pattern with a separable 7-tap box filter, applied twice
    for axis in (1, 2, 1, 2):
        patterns = sum(np.roll(patterns, k, axis) for k in range(-3, 4)) / 7
    patterns = (patterns - patterns.mean((1, 2), keepdims=True)) / patterns.std((1, 2), keepdims=True)
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % num_classes)
    dy, dx = rng.integers(0, 7, n), rng.integers(0, 7, n)
    rows = dy[:, None] + np.arange(side)
    cols = dx[:, None] + np.arange(side)
    shifted = patterns[labels[:, None, None], rows[:, :, None], cols[:, None, :]]
    other = patterns[(labels + rng.integers(1, num_classes, n)) % num_classes, 3:3 + side, 3:3 + side]
    contrast = rng.uniform(0.5, 1.0, (n, 1, 1))
    x = contrast * shifted + 0.3 * other + rng.normal(0, 0.6, (n, side, side))
    images = np.clip(75 + 45 * x, 0, 255).astype(np.uint8)
    return images, labels.astype(np.uint8)


def make_fashion_mnist(root: Path, n_train: int = 6000, n_test: int = 1000) -> Path:
    """Fashion-MNIST's four gzipped IDX files (28x28 grey images, 10 classes) of learnable images."""
    root.mkdir(parents=True, exist_ok=True)
    for prefix, n, seed in (("train", n_train, 0), ("t10k", n_test, 1)):
        images, labels = learnable_images(n, seed)
        write_idx(root / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(root / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return root
