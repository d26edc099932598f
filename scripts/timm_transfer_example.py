"""The data and the pretrained file of the measured "your own backbone" example (docs/results.md).

    .venv/bin/python scripts/timm_transfer_example.py --out /tmp/timm_transfer

Everything comes from the Fashion-MNIST files on this machine; nothing is downloaded.

1. ``OUT/images``: an ImageFolder set (PNG files, one folder per class) of the five classes
   5-9 (sandal, shirt, sneaker, bag, ankle boot): ``train/`` 200 images per class (the first of
   each class in the official training set), ``val/`` the next 100 per class, ``test/`` every
   official test image of those classes (1,000 per class).
2. ``OUT/resnet10t_fmnist04.pth``: the state dict of a timm ``resnet10t`` trained as a plain
   classifier on the other five classes 0-4 (3,000 training images per class, none of the target
   classes), at 32 pixels, 3 channels, ImageNet normalisation (what ``data.name=image_folder``
   feeds it), 4 epochs of SGD. This stands in for an ImageNet file, which cannot be downloaded here:
   a user passes theirs the same way (docs/your_own_backbone.md).

Then MATE and CE fine-tune it on the folder (configs/timm_transfer.yaml):

    .venv/bin/mate compare --config timm_transfer --methods ce,mate --seeds 3 --out runs/timm_transfer \\
        data.root=/tmp/timm_transfer/images model.pretrained=/tmp/timm_transfer/resnet10t_fmnist04.pth
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image

from mate.data.fashion_mnist import fashion_mnist
from mate.data.image_folder import IMAGENET_MEAN, IMAGENET_STD
from mate.data.normalize import normalize_images

SOURCE_CLASSES, TARGET_CLASSES = (0, 1, 2, 3, 4), (5, 6, 7, 8, 9)
SIDE = 32


def prepare_images(out: Path) -> None:
    data = fashion_mnist()
    plan = {"train": (data.train, slice(0, 200)), "val": (data.train, slice(200, 300)),
            "test": (data.test, slice(None))}
    for split, (source, per_class) in plan.items():
        for c in TARGET_CLASSES:
            folder = out / split / data.class_names[c].lower().replace(" ", "_").replace("/", "_")
            folder.mkdir(parents=True, exist_ok=True)
            for i in (source.labels == c).nonzero().flatten()[per_class].tolist():
                Image.fromarray(source.images[i, 0].numpy()).save(folder / f"{i:05d}.png")


def pretrain(path: Path, epochs: int = 4, per_class: int = 3000, seed: int = 0) -> dict:
    import timm

    torch.manual_seed(seed)
    data = fashion_mnist()
    keep = torch.cat([(data.train.labels == c).nonzero().flatten()[:per_class] for c in SOURCE_CLASSES])
    x = F.interpolate(data.train.images[keep].float(), size=SIDE, mode="bilinear", align_corners=False)
    x = normalize_images(x.expand(-1, 3, -1, -1), IMAGENET_MEAN, IMAGENET_STD)
    y = data.train.labels[keep]
    model = timm.create_model("resnet10t", num_classes=len(SOURCE_CLASSES))
    batch, lr = 128, 0.1
    steps = epochs * math.ceil(len(y) / batch)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    log = []
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(len(y))
        correct = 0
        for start in range(0, len(y), batch):
            i = perm[start:start + batch]
            xb = F.pad(x[i], (4, 4, 4, 4), mode="reflect")
            dx, dy = torch.randint(0, 9, (2,)).tolist()
            xb = xb[:, :, dy:dy + SIDE, dx:dx + SIDE]
            logits = model(xb)
            loss = F.cross_entropy(logits, y[i])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            correct += (logits.argmax(1) == y[i]).sum().item()
        log.append({"epoch": epoch + 1, "train_acc": 100.0 * correct / len(y)})
        print(log[-1], flush=True)
    torch.save(model.state_dict(), path)
    return {"model": "resnet10t", "classes": list(SOURCE_CLASSES), "images": len(y), "side": SIDE,
            "epochs": epochs, "log": log}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="/tmp/timm_transfer")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if not (out / "images" / "test").is_dir():
        prepare_images(out / "images")
    weights = out / "resnet10t_fmnist04.pth"
    if not weights.is_file():
        info = pretrain(weights)
        (out / "pretrain.json").write_text(json.dumps(info, indent=1))
    print(f"images in {out / 'images'}, weights in {weights}")


if __name__ == "__main__":
    main()
