"""Batched early exit on an ONNX export, with ONNX Runtime: for deployment without PyTorch kernels.

``OnnxEarlyExitPredictor(folder)`` loads what ``export_onnx`` wrote (the stage graphs and the
manifest with thresholds and score) and runs a batch exactly as ``EarlyExitPredictor`` does:
stage by stage, the samples that pass exit k's threshold leave, the rest are compacted (one
NumPy ``take``) and go on. It works on NumPy arrays, and its scores are computed in NumPy
(``mate.evaluation.score_step`` on NumPy arrays: the same formulas as on tensors, in float32).

Exactness: ``offline_exits(stage_logits(images))`` is the offline simulation for this runtime
(every stage on every row, then the first exit whose score passes). The predictor's exits and
predictions equal it exactly (tests/test_predictor.py), for the reason given in
predictor.py: a row's arithmetic does not depend on which rows share its batch, except in a
batch of one, which is never run (a lone sample runs as two copies). Its logits differ from
PyTorch's by float rounding (ONNX Runtime folds BatchNorm and fuses activations itself), so the
PyTorch predictor and this one may disagree on a sample whose score sits within ~1e-6 of a
threshold.

One session per stage. The sessions' worker threads do not spin while waiting (spinning threads
of three idle sessions took the cores from the busy one: 3x slower on 2 cores).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ..data.normalize import normalize_images
from ..errors import ConfigError, MateError
from ..evaluation.budget import exit_decisions, exit_thresholds
from ..evaluation.scores import check_score, check_thresholds, exit_scores, score_step, select_state
from .export import manifest_thresholds


@dataclass
class OnnxEarlyExitResult:
    predictions: np.ndarray  # N, int64
    exits: np.ndarray  # N, int64, 0-based
    flops: np.ndarray  # N, float64: F_k of each sample's exit

    @property
    def mean_flops(self) -> float:
        return float(self.flops.mean())


def read_manifest(folder: Path) -> dict:
    """``folder/manifest.json``, with the keys a predictor needs checked: one clear MateError for a
    missing, unreadable or inconsistent manifest."""
    path = folder / "manifest.json"
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise MateError(f"{folder} has no manifest.json; write the folder with mate export") from None
    except (OSError, ValueError) as exc:
        raise MateError(f"cannot read {path}: {exc}") from None
    if not isinstance(manifest, dict):
        raise MateError(f"{path} is not a manifest written by mate export")
    for key, valid in (("num_exits", lambda v: isinstance(v, int) and v >= 1),
                       ("num_classes", lambda v: isinstance(v, int) and v >= 2),
                       ("input_shape", lambda v: isinstance(v, list) and len(v) == 3
                        and all(isinstance(d, int) and d > 0 for d in v)),
                       ("stages", lambda v: isinstance(v, list) and all(isinstance(n, str) for n in v)),
                       ("flops", lambda v: isinstance(v, list) and all(isinstance(f, (int, float)) for f in v))):
        if not valid(manifest.get(key)):
            raise MateError(f"{path} has no valid {key!r}; export the model again")
    k = manifest["num_exits"]
    if len(manifest["stages"]) != k or len(manifest["flops"]) != k:
        raise MateError(f"{path} gives {k} exits but lists {len(manifest['stages'])} stage files and "
                        f"{len(manifest['flops'])} costs; export the model again")
    return manifest


def stage_path(folder: Path, name: str) -> Path:
    """The stage file ``name`` of the manifest, which must lie inside the export folder: a manifest
    is data, and must not make the predictor load a graph from elsewhere."""
    path = folder / name
    if Path(name).is_absolute() or folder.resolve() not in path.resolve().parents:
        raise MateError(f"{folder}/manifest.json names the stage file {name}, which is not inside the export "
                        "folder; export the model again")
    if not path.is_file():
        raise MateError(f"{path} is missing; export the model again")
    return path


def _static_shape(node) -> list:
    """A graph input's or output's shape without the (dynamic) batch axis."""
    return list(node.shape[1:])


def check_stage_shapes(folder: Path, manifest: dict, sessions: Sequence) -> None:
    """The manifest's input shape is what stage 1 takes, and each stage's features are what the
    next one takes (a wrong or reordered stage list would otherwise fail deep inside ONNX Runtime)."""
    names = manifest["stages"]
    first = _static_shape(sessions[0].get_inputs()[0])
    if first != list(manifest["input_shape"]):
        given = " x ".join(map(str, manifest["input_shape"]))
        raise MateError(f"{folder}/manifest.json gives the input shape {given}, but {names[0]} takes "
                        f"{' x '.join(map(str, first))}; export the model again")
    for k in range(len(sessions) - 1):
        outputs = sessions[k].get_outputs()
        gives = _static_shape(outputs[0]) if len(outputs) > 1 else None
        takes = _static_shape(sessions[k + 1].get_inputs()[0])
        if gives != takes:
            shown = " x ".join(map(str, gives)) if gives else "no features"
            raise MateError(f"{folder}/manifest.json lists stages that do not chain: {names[k]} gives {shown}, "
                            f"{names[k + 1]} takes {' x '.join(map(str, takes))}; export the model again")


class OnnxEarlyExitPredictor:
    """Early exit over ``stage_1.onnx`` .. ``stage_K.onnx`` of an export folder.

    thresholds: K-1 values (or one for all); default: the manifest's. score: default the
    manifest's, else max_prob. threads: ONNX Runtime's intra-op threads (default: its own choice).
    Inputs are normalised images, N x C x H x W float32 (``normalize`` applies the manifest's
    mean/std to images in [0, 255]).
    """

    def __init__(self, folder: str | Path, thresholds: Optional[float | Sequence[float]] = None,
                 score: Optional[str] = None, threads: Optional[int] = None,
                 providers: Optional[Sequence[str]] = None):
        try:
            import onnxruntime as ort
        except ImportError:
            raise MateError("the ONNX predictor needs onnxruntime: pip install 'mate-distill[export]'") from None
        folder = Path(folder)
        self.manifest = read_manifest(folder)
        k = int(self.manifest["num_exits"])
        self.num_exits = k
        self.score = check_score(score or self.manifest.get("score") or "max_prob")
        if thresholds is None:
            thresholds = self.manifest.get("thresholds")
            if thresholds is None:
                raise ConfigError(f"{folder}/manifest.json has no thresholds; give thresholds=...")
            thresholds = manifest_thresholds(thresholds)
        check_thresholds(thresholds, self.score, int(self.manifest["num_classes"]), k)
        self.thresholds = exit_thresholds(thresholds, k)
        self.flops = np.asarray(self.manifest["flops"], dtype=np.float64)

        options = ort.SessionOptions()
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if threads:
            options.intra_op_num_threads = int(threads)
        providers = list(providers or ["CPUExecutionProvider"])
        self.sessions = []
        for name in self.manifest["stages"]:
            path = stage_path(folder, name)
            try:
                self.sessions.append(ort.InferenceSession(str(path), options, providers=providers))
            except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own types (InvalidProtobuf, Fail, ...)
                reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise MateError(f"cannot load {path}: the file is damaged or not an ONNX graph ({reason}); "
                                "export the model again") from None
        self.input_names = [s.get_inputs()[0].name for s in self.sessions]
        check_stage_shapes(folder, self.manifest, self.sessions)

    def normalize(self, images: np.ndarray) -> np.ndarray:
        """Images in [0, 255] (N x C x H x W) -> the network's input, with the manifest's mean/std."""
        mean, std = self.manifest.get("mean"), self.manifest.get("std")
        if mean is None or std is None:
            raise ConfigError("the manifest has no mean/std; pass normalised images to predict()")
        return normalize_images(np.asarray(images), mean, std)

    def _check(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        shape = tuple(self.manifest["input_shape"])
        if x.ndim != 4 or x.shape[1:] != shape or x.shape[0] == 0:
            raise ConfigError(f"expected images of shape N x {' x '.join(map(str, shape))}, got {x.shape}")
        return x

    def stage_logits(self, x: np.ndarray) -> list[np.ndarray]:
        """Every exit's logits for every row (no early exit): the offline simulation's input."""
        x = self._check(x)
        n = len(x)
        if n == 1:
            x = np.repeat(x, 2, axis=0)
        out = []
        h = x
        for k, session in enumerate(self.sessions):
            result = session.run(None, {self.input_names[k]: h})
            out.append(result[-1][:n])
            h = result[0]
        return out

    def offline_exits(self, logits: Sequence[np.ndarray]) -> OnnxEarlyExitResult:
        """The offline simulation: the first exit whose score passes its threshold, per sample."""
        exits = exit_decisions(exit_scores(np.stack(logits), self.score), self.thresholds)
        stacked = np.stack([z.argmax(axis=1) for z in logits])
        return OnnxEarlyExitResult(stacked[exits, np.arange(len(exits))], exits, self.flops[exits])

    def predict(self, x: np.ndarray) -> OnnxEarlyExitResult:
        x = self._check(x)
        n = len(x)
        predictions = np.empty(n, dtype=np.int64)
        exits = np.empty(n, dtype=np.int64)
        rows = np.arange(n)
        if n == 1:
            rows, x = np.repeat(rows, 2), np.repeat(x, 2, axis=0)
        last = self.num_exits - 1
        state = None
        h = x
        for k, session in enumerate(self.sessions):
            result = session.run(None, {self.input_names[k]: h})
            logits = result[-1]
            if k == last:
                predictions[rows] = logits.argmax(axis=1)
                exits[rows] = k
                break
            score, state = score_step(logits, self.score, state)
            passes = score >= self.thresholds[k]
            leaving = np.flatnonzero(passes)
            if leaving.size:
                predictions[rows[leaving]] = logits[leaving].argmax(axis=1)
                exits[rows[leaving]] = k
            staying = np.flatnonzero(~passes)
            if staying.size == 0:
                break
            if leaving.size == 0:
                h = result[0]
                continue
            if staying.size == 1:
                staying = np.repeat(staying, 2)
            h = result[0].take(staying, axis=0)
            rows = rows[staying]
            state = select_state(state, staying)
        return OnnxEarlyExitResult(predictions, exits, self.flops[exits])

    __call__ = predict
