import torch

from methods.networks import NetConfig, build_network


def n_params(net):
    return sum(p.numel() for p in net.parameters())


def test_survey_b_unet_has_about_three_million_parameters_and_keeps_odd_sizes():
    net = build_network(NetConfig(), 1, 1, sigmoid=True)  # 6 scales × 128, skips [0,0,0,0,4,4]
    assert 2.8e6 < n_params(net) < 3.2e6
    small = build_network(NetConfig(scales=3, channels=8, skip_channels=[0, 4, 4]), 1, 1, sigmoid=True)
    out = small(torch.randn(1, 1, 37, 45))
    assert out.shape == (1, 1, 37, 45) and out.min() >= 0 and out.max() <= 1


def test_skipnet_and_linear_output():
    cfg = NetConfig(name="skipnet", scales=3, channels=8, skip_channels=[4, 4, 4], norm="batch", upsample="bilinear")
    net = build_network(cfg, 32, 2, sigmoid=False)
    out = net(torch.rand(1, 32, 24, 24))
    assert out.shape == (1, 2, 24, 24) and out.min() < 0  # signed output (no sigmoid)


def test_skip_channel_list_length_is_checked():
    try:
        build_network(NetConfig(scales=3, skip_channels=[0, 4]), 1, 1, True)
    except ValueError as exc:
        assert "one entry per scale" in str(exc)
    else:
        raise AssertionError("expected a ValueError")
