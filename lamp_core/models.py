"""The paper's convolutional autoencoder (§3.1, "Implementation details").

Encoder blocks are conv → BatchNorm → LeakyReLU, decoder blocks upsample → conv → BatchNorm →
LeakyReLU, with no skip connections (the paper drops them to contain generalisation). Depth is
4 blocks each way for small images (28-32 px) and 6 for larger ones. A final 3x3 convolution and
a sigmoid map back to the image's channels, so reconstructions stay in [0, 1] like the inputs
(which keeps every base loss map in [0, 1], as eq. 2 needs).

Patch-wise reconstruction (the paper's "number of patches" hyperparameter, after Lee et al.):
`PatchAutoencoder` cuts each image into a p x p grid, reconstructs every patch with the same
autoencoder, and reassembles the image, so losses and scores are computed on whole images.
"""
from __future__ import annotations

import torch
from torch import nn

from .config import ModelConfig, resolved_depth

NEGATIVE_SLOPE = 0.2


def _block(c_in: int, c_out: int, k: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, k, stride=stride, padding=k // 2, bias=False),  # BN supplies the bias
        nn.BatchNorm2d(c_out),
        nn.LeakyReLU(NEGATIVE_SLOPE, inplace=True),
    )


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

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, C, H, W) → (N, C, H, W)
        return self.head(self.decoder(self.encoder(x)))


class PatchAutoencoder(nn.Module):
    """Reconstructs a p x p grid of patches with one autoencoder and reassembles the image."""

    def __init__(self, inner: ConvAutoencoder, patches: int):
        super().__init__()
        self.inner, self.patches = inner, patches

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        p = self.patches
        ph, pw = h // p, w // p
        tiles = x.reshape(n, c, p, ph, p, pw).permute(0, 2, 4, 1, 3, 5).reshape(n * p * p, c, ph, pw)
        out = self.inner(tiles)
        return out.reshape(n, p, p, c, ph, pw).permute(0, 3, 1, 4, 2, 5).reshape(n, c, h, w)


def build_model(model_cfg: ModelConfig, in_channels: int, image_size: int) -> nn.Module:
    patch_size = image_size // model_cfg.patches
    inner = ConvAutoencoder(
        in_channels, patch_size, depth=resolved_depth(model_cfg, image_size), width=model_cfg.width,
        kernel_size=model_cfg.kernel_size, latent_channels=model_cfg.latent_channels)
    return inner if model_cfg.patches == 1 else PatchAutoencoder(inner, model_cfg.patches)
