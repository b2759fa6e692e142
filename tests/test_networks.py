import pytest
import torch

from methods.networks import NetConfig, SkipNetConfig, UNetConfig, build_network, network_configs
from methods.networks.cnn1d import CNN1DConfig
from methods.networks.decoder import DeepDecoderConfig


def n_params(net):
    return sum(p.numel() for p in net.parameters())


def test_survey_b_unet_has_about_three_million_parameters_and_keeps_odd_sizes():
    net = build_network(UNetConfig(), 1, 1, sigmoid=True)  # 6 scales × 128, skips [0,0,0,0,4,4]
    assert 2.8e6 < n_params(net) < 3.2e6
    small = build_network(UNetConfig(scales=3, channels=8, skip_channels=[0, 4, 4]), 1, 1, sigmoid=True)
    out = small(torch.randn(1, 1, 37, 45))
    assert out.shape == (1, 1, 37, 45) and out.min() >= 0 and out.max() <= 1


def test_skipnet_and_linear_output():
    cfg = SkipNetConfig(scales=3, channels=8, skip_channels=[4, 4, 4], norm="batch", upsample="bilinear")
    net = build_network(cfg, 32, 2, sigmoid=False)
    out = net(torch.rand(1, 32, 24, 24))
    assert out.shape == (1, 2, 24, 24) and out.min() < 0  # signed output (no sigmoid)


def test_skip_channel_list_length_is_checked():
    with pytest.raises(ValueError, match="one entry per scale"):
        UNetConfig(scales=3, skip_channels=[0, 4])


def test_each_network_name_has_its_config_class_and_the_net_type_is_tagged_by_name():
    assert network_configs() == {"unet": UNetConfig, "skipnet": SkipNetConfig, "deep_decoder": DeepDecoderConfig,
                                 "cnn1d": CNN1DConfig}
    assert NetConfig.__metadata__[0].registry == network_configs


@pytest.mark.parametrize("cfg", [UNetConfig(scales=4, channels=8, skip_channels=[4] * 4, norm="batch"),
                                 SkipNetConfig(scales=3, channels=8, skip_channels=[4] * 3),
                                 SkipNetConfig(scales=3, channels=8, skip_channels=[4] * 3, norm="batch")])
def test_min_size_is_the_smallest_input_the_network_accepts(cfg):
    net = build_network(cfg, 1, 1, sigmoid=True)
    n = cfg.min_size
    assert net(torch.rand(1, 1, n, n)).shape == (1, 1, n, n)
    with pytest.raises((RuntimeError, ValueError)):
        net(torch.rand(1, 1, n - 1, n - 1))


def test_unet_min_size_gives_one_pixel_at_the_lowest_scale():
    cfg = UNetConfig(scales=4, channels=8, skip_channels=[0, 0, 4, 4])
    assert cfg.min_size == 8
    assert build_network(cfg, 1, 1, sigmoid=True)(torch.rand(1, 1, 8, 8)).shape == (1, 1, 8, 8)


def test_any_dip_method_can_use_the_deep_decoder_seed_input():
    """The base module feeds a network with a low-resolution seed (deep decoder) a seed-sized z
    and tells it the image size, so `net.name: deep_decoder` works under every method."""
    from datamodules.registry import load_all as load_datasets
    from methods.registry import load_all as load_methods

    spec, data = load_methods()["vanilla_dip"], load_datasets()["denoising"]
    task = data.build(data.config(crop=24))
    cfg = spec.config(net=DeepDecoderConfig(layers=3, channels=4), input_channels=4)
    module = spec.cls(cfg, task.measurement(), seed=0, max_steps=1)
    assert module.z.shape[-2:] == cfg.net.input_size(24, 24) != (24, 24)
    assert module().shape == task.gt.shape
