"""The autoencoder: shapes for small and large inputs, depth rule, bottleneck, patch reassembly."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from lamp_core.config import ModelConfig, resolved_depth
from lamp_core.models import ConvAutoencoder, PatchAutoencoder, build_model


@pytest.mark.parametrize("size,channels", [(28, 1), (32, 3), (64, 3), (30, 1)])
def test_output_matches_input_and_stays_in_unit_range(size, channels):
    torch.manual_seed(0)
    model = build_model(ModelConfig(), channels, size).eval()
    x = torch.rand(2, channels, size, size)
    y = model(x)
    assert y.shape == x.shape
    assert y.min() >= 0 and y.max() <= 1


def test_depth_rule_and_blocks():
    assert resolved_depth(ModelConfig(), 28) == 4
    assert resolved_depth(ModelConfig(), 64) == 6
    assert resolved_depth(ModelConfig(patches=2), 64) == 4   # 32 px patches are "small"
    assert resolved_depth(ModelConfig(depth=5), 28) == 5
    model = ConvAutoencoder(1, 28, depth=4)
    assert len(model.encoder) == 4 and len(model.decoder) == 4
    first = model.encoder[0]
    assert isinstance(first[0], nn.Conv2d) and isinstance(first[1], nn.BatchNorm2d) and isinstance(first[2], nn.LeakyReLU)
    dec = model.decoder[0]
    assert isinstance(dec[0], nn.Upsample) and isinstance(dec[1], nn.Conv2d) and isinstance(dec[2], nn.BatchNorm2d)


def test_bottleneck_is_smaller_than_the_input():
    model = ConvAutoencoder(1, 28, depth=4, latent_channels=32)
    c, h, w = model.latent_shape
    assert c * h * w < 28 * 28


def test_kernel_size_option():
    model = ConvAutoencoder(1, 28, depth=4, kernel_size=5)
    assert model.encoder[0][0].kernel_size == (5, 5)


class _Tagger(nn.Module):
    """Adds the patch index to each patch, to check patches return to their own place."""

    def forward(self, x):
        tags = torch.arange(x.shape[0], dtype=x.dtype).view(-1, 1, 1, 1)
        return x + 1000 * tags


def test_patches_are_cut_and_reassembled_in_place():
    x = torch.rand(2, 3, 8, 8)
    out = PatchAutoencoder(_Tagger(), patches=2)(x)
    # image 0's top-left patch is patch 0, top-right 1, bottom-left 2, bottom-right 3; image 1 adds 4
    tags = torch.round((out - x) / 1000)
    assert tags[0, :, :4, :4].unique().tolist() == [0.0]
    assert tags[0, :, :4, 4:].unique().tolist() == [1.0]
    assert tags[0, :, 4:, :4].unique().tolist() == [2.0]
    assert tags[1, :, 4:, 4:].unique().tolist() == [7.0]


def test_patch_model_via_config():
    model = build_model(ModelConfig(patches=4), 1, 32).eval()
    assert isinstance(model, PatchAutoencoder) and model.inner.size == 8
    assert model(torch.rand(1, 1, 32, 32)).shape == (1, 1, 32, 32)
