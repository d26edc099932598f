"""Exits on any timm backbone: ``model.name=timm model.backbone=<timm model name>``.

**Convolutional networks** are cut at the feature levels that ``timm.create_model(...,
features_only=True)`` returns (the model's ``feature_info``): the stem is empty and stage k runs
timm's modules from the end of level k-1 to the end of level k, so the blocks are timm's own and
level k is exactly the k-th map ``features_only`` gives. The exits are the BYOT resize exits of
every other model (resized to the last level's shape, pooled, Linear). Level 1 is the shallowest;
for most CNNs it is the stem's output, at half the input resolution.

**Vision transformers** (timm's ``VisionTransformer``: ViT, DeiT, ...) have one level per block,
as their ``feature_info`` and ``forward_intermediates`` do. The stem is the model itself with its
blocks, final norm and head moved out: patch embedding, class and register tokens, position
embedding. Stage k is block k, and exit k is a copy of the model's own head: norm, pool (the
model's ``global_pool``: the class token, or the mean of the patch tokens), Linear, on B x N x D
tokens. The last exit *is* the model's final norm and head, so the last exit's logits are those of
the timm model's own ``forward``.

timm is imported when a model is built, never before: ``mate`` runs without it.
"""
from __future__ import annotations

import copy
import difflib
import sys
from collections import OrderedDict
from typing import Optional, Sequence, Union

from torch import Tensor, nn

from ..errors import ConfigError, MateError
from .base import MultiExitNetwork
from .pretrained import download_failed, load_checkpoint_backbone, load_weights, read_weights, under
from .registry import register_model

# Arguments of timm.create_model that mate sets itself (from the data and the other model options).
RESERVED_KWARGS = ("num_classes", "in_chans", "img_size", "pretrained", "features_only", "out_indices",
                   "feature_cls", "pretrained_cfg_overlay")
POOLS = ("token", "avg", "max", "avgmax")  # timm's global_pool_nlc


def import_timm():
    """The timm package, or one MateError saying how to install it."""
    try:
        import timm
    except ImportError:
        raise MateError("model.name=timm needs the timm package: pip install 'mate-distill[timm]'") from None
    return timm


@register_model("timm")
def timm_model(backbone: Optional[str] = None, num_classes: int = 1000, in_channels: int = 3,
               input_size: int = 224, exit_levels: Optional[Sequence[int]] = None,
               pretrained: Union[bool, str] = False, timm_kwargs: Optional[dict] = None) -> MultiExitNetwork:
    """A multi-exit network on the timm model ``backbone``.

    Args:
        backbone: a timm model name (``timm.list_models()``), e.g. ``resnet50``, ``convnext_tiny``,
            ``vit_small_patch16_224``; a pretrained tag (``vit_small_patch16_224.augreg_in21k``) picks
            the weights ``pretrained=true`` downloads.
        exit_levels: the feature levels that carry an exit, counted from 1 (for a vision transformer:
            block numbers); default every level. The last level always has one.
        pretrained: false, a weights file (a timm state dict or a mate checkpoint of this model), or
            true for timm's own download (see ``models/pretrained.py``).
        timm_kwargs: further keyword arguments of ``timm.create_model``, e.g. ``drop_path_rate``, or
            ``depth`` and ``embed_dim`` for a small vision transformer.
    """
    timm = import_timm()
    if not backbone:
        raise ConfigError("model.name=timm needs model.backbone=<a timm model name>, e.g. resnet50 or "
                          "vit_small_patch16_224 (timm.list_models() lists them)")
    if not timm.is_model(backbone):
        close = difflib.get_close_matches(backbone, timm.list_models(), n=5)
        raise ConfigError(f"model.backbone={backbone!r} is not a timm model"
                          + (f"; close names: {', '.join(close)}" if close else ""))
    kwargs = dict(timm_kwargs or {})
    reserved = sorted(set(kwargs) & set(RESERVED_KWARGS))
    if reserved:
        raise ConfigError(f"model.timm_kwargs cannot set {', '.join(reserved)}: mate sets it from the data and "
                          "the model options (model.pretrained, model.exit_levels)")
    cfg = timm.models.get_pretrained_cfg(backbone)
    if cfg is not None and cfg.fixed_input_size:  # e.g. a ViT's position embedding has one size
        kwargs["img_size"] = input_size
    weights, from_mate = None, False
    if isinstance(pretrained, str):
        weights, from_mate = read_weights(pretrained)
    try:
        model = timm.create_model(backbone, pretrained=pretrained is True, num_classes=num_classes,
                                  in_chans=in_channels, **kwargs)
    except OSError as exc:  # the download (pretrained=true) failed: offline, or the hub unreachable
        raise download_failed("timm", f"'{backbone}'", exc) from None
    except (TypeError, ValueError, AssertionError) as exc:
        raise ConfigError(f"timm cannot build '{backbone}' with {kwargs or 'its default arguments'} "
                          f"({type(exc).__name__}: {exc})") from None
    except RuntimeError as exc:
        if pretrained is not True:
            raise
        raise ConfigError(f"model.pretrained=true: timm's weights for '{backbone}' do not fit this model "
                          f"({str(exc).splitlines()[0]}); drop the model.timm_kwargs that change the "
                          "architecture, or pass a weights file") from None
    if weights is not None and not from_mate:
        load_timm_state_dict(timm, model, weights, pretrained, backbone)

    if isinstance(model, timm.models.vision_transformer.VisionTransformer):
        net = _transformer(model, backbone, num_classes, in_channels, input_size, exit_levels)
    else:
        net = _convolutional(timm, model, backbone, num_classes, in_channels, input_size, exit_levels)
    if from_mate:
        load_checkpoint_backbone(net, weights, pretrained, f"timm '{backbone}'")
    return net


def load_timm_state_dict(timm, model: nn.Module, state: dict[str, Tensor], source: str, backbone: str) -> None:
    """A timm-format state dict into the whole timm model, as timm's own loading prepares it.

    The model module's ``checkpoint_filter_fn`` converts other formats and resamples a ViT's
    position embedding to this input size; a 3-channel first convolution is adapted to the
    model's input channels (``timm.models.adapt_input_conv``). The classifier is not loaded.
    """
    what = f"timm '{backbone}'"
    filter_fn = getattr(sys.modules.get(type(model).__module__), "checkpoint_filter_fn", None)
    if filter_fn is not None:
        try:
            state = filter_fn(state, model)
        except Exception as exc:  # noqa: BLE001 - the filter fails on weights of another model
            raise ConfigError(f"model.pretrained={source} does not fit {what}: timm cannot convert it "
                              f"({type(exc).__name__}: {exc})") from None
    pretrained_cfg = getattr(model, "pretrained_cfg", {}) or {}
    first = pretrained_cfg.get("first_conv")
    for name in (first,) if isinstance(first, str) else (first or ()):
        key = f"{name}.weight"
        try:
            own = model.get_submodule(name).weight
        except AttributeError:
            continue
        w = state.get(key)
        if w is not None and w.dim() == 4 and w.shape[0] == own.shape[0] and w.shape[1] != own.shape[1]:
            state = {**state, key: timm.models.adapt_input_conv(own.shape[1], w)}
    load_weights(model, state, source, what, ignore=under(pretrained_cfg.get("classifier")),
                 hint=f"Pass the state dict of a timm '{backbone}' (timm.create_model('{backbone}').state_dict(), "
                      "the same model.timm_kwargs), or a mate checkpoint of this model.")


# -- convolutional networks --------------------------------------------------------------------

def _convolutional(timm, model: nn.Module, backbone: str, num_classes: int, in_channels: int, input_size: int,
                   exit_levels: Optional[Sequence[int]]) -> MultiExitNetwork:
    fmt = getattr(model, "output_fmt", "NCHW")
    if getattr(fmt, "value", fmt) != "NCHW":
        raise ConfigError(f"timm '{backbone}' gives its features channels-last (NHWC); model.name=timm "
                          "supports backbones whose feature maps are NCHW")
    levels = _feature_list(timm, model, backbone)
    stages, group = [], OrderedDict()
    for name, module in levels.items():
        group[name] = module
        if name in levels.return_layers:
            stages.append(nn.Sequential(group))
            group = OrderedDict()
    net = MultiExitNetwork(nn.Identity(), stages, num_classes, in_channels, input_size,
                           _exit_stages(exit_levels, len(stages)))
    for m in net.exits.modules():
        if isinstance(m, nn.Conv2d):  # the backbone keeps timm's initialisation
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    return net


def _feature_list(timm, model: nn.Module, backbone: str):
    """timm's FeatureListNet of ``model`` at every level, its modules shared with ``model``.

    For some models timm flattens the top-level ``nn.Sequential`` children (a level ends inside
    one); this tries without flattening, then with it. Either way the modules run in the model's
    order, so the levels are the maps ``features_only`` gives.
    """
    if not getattr(model, "feature_info", None):
        raise ConfigError(f"timm '{backbone}' does not describe its feature levels (feature_info)")
    out_indices = tuple(range(len(model.feature_info)))
    for flatten in (False, True):
        try:
            return timm.models.FeatureListNet(model, out_indices=out_indices, flatten_sequential=flatten)
        except AssertionError:
            continue
    raise ConfigError(f"timm '{backbone}' cannot be cut into stages: its feature levels lie inside its modules "
                      "(timm reads them with hooks or forward_intermediates). model.name=timm takes CNNs whose "
                      "levels end top-level modules, and timm's VisionTransformer (ViT, DeiT)")


def _exit_stages(exit_levels: Optional[Sequence[int]], num_levels: int) -> list[int]:
    """model.exit_levels checked against the backbone's levels; the last level always has an exit."""
    if exit_levels is None:
        return list(range(1, num_levels + 1))
    levels = sorted(set(int(k) for k in exit_levels))
    if not levels or levels[0] < 1 or levels[-1] > num_levels:
        raise ConfigError(f"model.exit_levels must be level numbers in 1..{num_levels} (this backbone has "
                          f"{num_levels} feature levels), got {list(exit_levels)}")
    return levels if levels[-1] == num_levels else levels + [num_levels]


# -- vision transformers -------------------------------------------------------------------------

class TokenStem(nn.Module):
    """What a timm VisionTransformer runs before its first block, in its own code.

    ``vit`` is the model with its blocks, final norm and head moved out (they live in the
    stages and exits), so its ``forward_features`` embeds the patches, adds the class and register
    tokens and the position embedding, and stops there.
    """

    def __init__(self, vit: nn.Module):
        super().__init__()
        self.vit = vit

    def forward(self, x: Tensor) -> Tensor:
        return self.vit.forward_features(x)


class TokenExit(nn.Module):
    """A vision transformer's head on B x N x D tokens: norm, pool, fc_norm, dropout, Linear.

    pool: timm's ``global_pool``: ``token`` (the class token), ``avg``, ``max`` or ``avgmax``
    over the patch tokens (all tokens with ``include_prefix``).
    """

    def __init__(self, norm: nn.Module, pool: str, num_prefix_tokens: int, include_prefix: bool,
                 fc_norm: nn.Module, head_drop: nn.Module, fc: nn.Module):
        super().__init__()
        self.norm, self.fc_norm, self.head_drop, self.fc = norm, fc_norm, head_drop, fc
        self.pool, self.num_prefix_tokens, self.include_prefix = pool, num_prefix_tokens, include_prefix

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x = self.norm(x)
        if self.pool == "token":
            x = x[:, 0]
        else:
            x = x if self.include_prefix else x[:, self.num_prefix_tokens:]
            if self.pool == "avg":
                x = x.mean(dim=1)
            elif self.pool == "max":
                x = x.amax(dim=1)
            else:
                x = 0.5 * (x.amax(dim=1) + x.mean(dim=1))
        feature = self.fc_norm(x)
        return feature, self.fc(self.head_drop(feature))


def _transformer(vit: nn.Module, backbone: str, num_classes: int, in_channels: int, input_size: int,
                 exit_levels: Optional[Sequence[int]]) -> MultiExitNetwork:
    if getattr(vit, "attn_pool", None) is not None or vit.global_pool not in POOLS:
        raise ConfigError(f"timm '{backbone}' pools its tokens with global_pool={vit.global_pool!r}; the exits "
                          f"support {', '.join(POOLS)} (set model.timm_kwargs.global_pool)")
    if getattr(vit, "head_dist", None) is not None:
        raise ConfigError(f"timm '{backbone}' has a distillation head; use its non-distilled variant")
    blocks = list(vit.blocks)
    exit_stages = _exit_stages(exit_levels, len(blocks))
    pooling = dict(pool=vit.global_pool, num_prefix_tokens=vit.num_prefix_tokens,
                   include_prefix=bool(getattr(vit, "pool_include_prefix", False)))
    last = TokenExit(vit.norm, fc_norm=vit.fc_norm, head_drop=vit.head_drop, fc=vit.head, **pooling)
    exits = [_fresh_copy(last) for _ in exit_stages[:-1]] + [last]
    vit.blocks = nn.Sequential()
    vit.norm, vit.fc_norm, vit.head_drop, vit.head = nn.Identity(), nn.Identity(), nn.Identity(), nn.Identity()
    return MultiExitNetwork(TokenStem(vit), blocks, num_classes, in_channels, input_size, exit_stages, exits=exits)


def _fresh_copy(exit_: TokenExit) -> TokenExit:
    """The same head, its weights initialised anew (norms to 1 and 0, Linear as timm's ViT)."""
    fresh = copy.deepcopy(exit_)
    for m in fresh.modules():
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif m is not fresh and hasattr(m, "reset_parameters"):
            m.reset_parameters()
    return fresh
