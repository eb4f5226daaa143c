"""The paper's convolutional autoencoder (§3.1, "Implementation details").

Encoder blocks are conv → BatchNorm → LeakyReLU, decoder blocks upsample → conv → BatchNorm →
LeakyReLU, with no skip connections (the paper drops them to contain generalisation). Depth is
4 blocks each way for small images (28-32 px) and 6 for larger ones. A final 3x3 convolution and
a sigmoid map back to the image's channels, so reconstructions stay in [0, 1] like the inputs
(which keeps every base loss map in [0, 1], as eq. 2 needs).

Patch-wise reconstruction (the paper's "number of patches" hyperparameter, after Lee et al.):
`PatchAutoencoder` cuts each image into a p x p grid, reconstructs every patch with the same
autoencoder, and reassembles the image, so losses and scores are computed on whole images.

The forward pass is described once, here: `forward_spec(model)` lists its layers in order
(`Layer`: [nearest upsample →] conv [→ BatchNorm] → leaky ReLU or sigmoid, with each layer's
parameter names) and its patch tiling (`tile` / `untile`). The module's own `forward`, the stacked
training of K runs (`lamp_core.stack`) and the fast landscape evaluator
(`lamp_core.landscape.fast`) all walk that description, and `forward_spec` is the one guard: a
model it does not describe raises `UnsupportedModel`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .config import LampError, ModelConfig, resolved_depth

NEGATIVE_SLOPE = 0.2


def _block(c_in: int, c_out: int, k: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, k, stride=stride, padding=k // 2, bias=False),  # BN supplies the bias
        nn.BatchNorm2d(c_out),
        nn.LeakyReLU(NEGATIVE_SLOPE, inplace=True),
    )


class UnsupportedModel(LampError):
    """A model whose forward pass `forward_spec` does not describe (not the lab's autoencoder)."""


@dataclass(frozen=True)
class Layer:
    """One step of the autoencoder's forward pass: [upsample →] conv [→ BatchNorm] → activation.

    Names are parameter prefixes inside the ConvAutoencoder ("encoder.0.0", "decoder.1.2",
    "head.0"); a PatchAutoencoder holds them under `ForwardSpec.prefix` ("inner.")."""

    conv: nn.Conv2d
    conv_name: str
    bn: nn.BatchNorm2d | None
    bn_name: str | None
    act: nn.Module                  # nn.LeakyReLU (slope: act.negative_slope) or nn.Sigmoid
    upsample: nn.Upsample | None    # nearest, to a fixed size, before the conv (decoder blocks)

    @property
    def leaky(self) -> bool:
        return isinstance(self.act, nn.LeakyReLU)

    @property
    def upsample_size(self) -> tuple[int, int] | None:
        if self.upsample is None:
            return None
        s = self.upsample.size
        return (s, s) if isinstance(s, int) else tuple(s)


@dataclass(frozen=True)
class ForwardSpec:
    """A model's forward pass: tile into p x p patches (p = 1: none), the layers, untile."""

    inner: "ConvAutoencoder"
    prefix: str                     # "" or "inner.": where the layers' parameters sit in the model
    patches: int
    layers: tuple[Layer, ...]


def _describe(inner: "ConvAutoencoder") -> tuple[Layer, ...]:
    """The layers of a ConvAutoencoder as built below; UnsupportedModel where a block differs."""
    layers = []
    for part, seq in (("encoder", inner.encoder), ("decoder", inner.decoder)):
        for i, block in enumerate(seq):
            mods = list(block)
            up = mods.pop(0) if part == "decoder" and mods and isinstance(mods[0], nn.Upsample) else None
            if (part == "decoder" and (up is None or up.mode != "nearest" or up.size is None)) or len(mods) != 3 \
                    or not isinstance(mods[1], nn.BatchNorm2d) or not isinstance(mods[2], nn.LeakyReLU):
                raise UnsupportedModel(f"{part} block {i} is not [upsample →] conv → BatchNorm → leaky ReLU")
            off = 0 if up is None else 1
            layers.append(_layer(mods[0], f"{part}.{i}.{off}", mods[1], f"{part}.{i}.{off + 1}", mods[2], up))
    head = list(inner.head)
    if len(head) != 2 or not isinstance(head[1], nn.Sigmoid):
        raise UnsupportedModel("the head is not conv → sigmoid")
    layers.append(_layer(head[0], "head.0", None, None, head[1], None))
    return tuple(layers)


def _layer(conv, conv_name, bn, bn_name, act, up) -> Layer:
    if not isinstance(conv, nn.Conv2d) or conv.groups != 1 or conv.dilation != (1, 1):
        raise UnsupportedModel(f"{conv_name} is not a plain convolution (groups 1, dilation 1)")
    return Layer(conv, conv_name, bn, bn_name, act, up)


def run_layers(layers: tuple[Layer, ...], x: torch.Tensor) -> torch.Tensor:
    """The layers' modules applied in order: the module's forward pass."""
    h = x
    for layer in layers:
        if layer.upsample is not None:
            h = layer.upsample(h)
        h = layer.conv(h)
        if layer.bn is not None:
            h = layer.bn(h)
        h = layer.act(h)
    return h


def forward_spec(model: nn.Module) -> ForwardSpec:
    """The forward description of a model `build_model` makes (the one guard: any other model
    raises UnsupportedModel, a one-line LampError)."""
    inner, prefix, patches = model, "", 1
    if isinstance(model, PatchAutoencoder):
        inner, prefix, patches = model.inner, "inner.", model.patches
    if not isinstance(inner, ConvAutoencoder):
        raise UnsupportedModel(f"{type(inner).__name__} has no forward description: the lab describes its "
                               "ConvAutoencoder, alone or in a PatchAutoencoder")
    return ForwardSpec(inner, prefix, patches, inner.layers)


def tile(x: torch.Tensor, p: int) -> torch.Tensor:
    """(N, C, H, W) → (N*p*p, C, H/p, W/p): each image's p x p patches, row by row. Acts per channel,
    so the stacked runs' (N, K*C, H, W) batches tile the same way."""
    if p == 1:
        return x
    n, c, h, w = x.shape
    ph, pw = h // p, w // p
    return x.reshape(n, c, p, ph, p, pw).permute(0, 2, 4, 1, 3, 5).reshape(n * p * p, c, ph, pw)


def untile(y: torch.Tensor, p: int) -> torch.Tensor:
    """The inverse of `tile`: (N*p*p, C, h, w) → (N, C, h*p, w*p)."""
    if p == 1:
        return y
    n, (c, ph, pw) = y.shape[0] // (p * p), y.shape[1:]
    return y.reshape(n, p, p, c, ph, pw).permute(0, 3, 1, 4, 2, 5).reshape(n, c, ph * p, pw * p)


class ConvAutoencoder(nn.Module):
    """Conv autoencoder for `in_channels` x `size` x `size` inputs.

    Each encoder block halves the spatial size while it is above 3 px (28 → 14 → 7 → 4 → 2);
    the decoder upsamples to the exact mirrored sizes, so odd sizes such as 7 round-trip.
    """

    def __init__(self, in_channels: int, size: int, depth: int = 4, width: int = 16,
                 kernel_size: int = 3, latent_channels: int = 32):
        super().__init__()
        self.in_channels, self.size = in_channels, size
        sizes = [size]
        channels = [in_channels]
        enc = []
        for i in range(depth):
            stride = 2 if sizes[-1] > 3 else 1
            c_out = latent_channels if i == depth - 1 else width * min(2**i, 4)
            enc.append(_block(channels[-1], c_out, kernel_size, stride))
            sizes.append((sizes[-1] + stride - 1) // stride if stride == 2 else sizes[-1])
            channels.append(c_out)
        self.encoder = nn.Sequential(*enc)
        dec = []
        for i in range(depth, 0, -1):
            c_out = channels[i - 1] if i > 1 else width
            dec.append(nn.Sequential(
                nn.Upsample(size=(sizes[i - 1], sizes[i - 1]), mode="nearest"),
                *_block(channels[i], c_out, kernel_size, 1),
            ))
        self.decoder = nn.Sequential(*dec)
        self.head = nn.Sequential(nn.Conv2d(width, in_channels, 3, padding=1), nn.Sigmoid())
        self.latent_shape = (channels[-1], sizes[-1], sizes[-1])
        # the forward description (plain attribute: the modules stay registered in the Sequentials)
        self.layers: tuple[Layer, ...] = _describe(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, C, H, W) → (N, C, H, W)
        return run_layers(self.layers, x)


class PatchAutoencoder(nn.Module):
    """Reconstructs a p x p grid of patches with one autoencoder and reassembles the image."""

    def __init__(self, inner: ConvAutoencoder, patches: int):
        super().__init__()
        self.inner, self.patches = inner, patches

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return untile(self.inner(tile(x, self.patches)), self.patches)


def build_model(model_cfg: ModelConfig, in_channels: int, image_size: int) -> nn.Module:
    patch_size = image_size // model_cfg.patches
    inner = ConvAutoencoder(
        in_channels, patch_size, depth=resolved_depth(model_cfg, image_size), width=model_cfg.width,
        kernel_size=model_cfg.kernel_size, latent_channels=model_cfg.latent_channels)
    return inner if model_cfg.patches == 1 else PatchAutoencoder(inner, model_cfg.patches)
