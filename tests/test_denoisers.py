"""The pluggable denoisers of methods/denoisers.py: they denoise grey, colour and complex
(real/imaginary) images, are chosen and validated by config, and DRUNet needs a local file."""
from __future__ import annotations

import dataclasses

import deepinv as dinv
import pytest
import torch

from benchmark.config import ConfigError, resolve
from datamodules.tasks.denoising import DenoisingConfig, natural_image
from methods.denoisers import (
    BM3DDenoiserConfig,
    DRUNetDenoiserConfig,
    NLMDenoiserConfig,
    TVDenoiserConfig,
    build_denoiser,
    denoiser_configs,
    register_denoiser,
)

SIGMA = 25 / 255
OFFLINE = {"bm3d": BM3DDenoiserConfig(), "bm3d_lc": BM3DDenoiserConfig(profile="lc"), "tv": TVDenoiserConfig()}


def clean_image(channels: int) -> torch.Tensor:
    """A 32² crop: grey, colour, or complex (real and imaginary part from two grey crops, signed)."""
    if channels == 3:
        return natural_image(DenoisingConfig(crop=32))[0]
    grey = [natural_image(DenoisingConfig(crop=32, grayscale=True, image="camera", crop_at=at))[0]
            for at in ([200, 200], [100, 300])]
    return grey[0] if channels == 1 else torch.cat([grey[0] - 0.5, 0.8 * (grey[1] - 0.5)], dim=1)


def noisy(x: torch.Tensor) -> torch.Tensor:
    return x + SIGMA * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("channels", [1, 3, 2], ids=["grey", "colour", "complex"])
@pytest.mark.parametrize("name", list(OFFLINE))
def test_each_offline_denoiser_lowers_the_error_of_a_noisy_image(name, channels):
    x = clean_image(channels)
    y = noisy(x)
    with torch.no_grad():
        out = build_denoiser(OFFLINE[name])(y, SIGMA)
    assert out.shape == y.shape and out.dtype == y.dtype
    assert (out - x).pow(2).mean() < 0.5 * (y - x).pow(2).mean()  # at least 3 dB better


@pytest.mark.parametrize("name", ["bm3d", "tv"])
def test_a_complex_image_is_denoised_channel_by_channel(name):
    y = noisy(clean_image(2))
    denoiser = build_denoiser(OFFLINE[name])
    with torch.no_grad():
        both = denoiser(y, SIGMA)
        each = torch.cat([denoiser(y[:, c:c + 1], SIGMA) for c in range(2)], dim=1)
    torch.testing.assert_close(both, each)


def test_the_tv_denoiser_is_a_function_of_its_input_without_warm_start():
    x, y = clean_image(1), noisy(clean_image(1))
    denoiser = build_denoiser(TVDenoiserConfig(n_it_max=5))
    first = denoiser(y, SIGMA)
    denoiser(x, SIGMA)  # another image in between
    assert torch.equal(denoiser(y, SIGMA), first)


def test_drunet_without_weights_fails_at_resolution_naming_the_option_and_where_to_get_the_file(tmp_path):
    for denoiser in ({"name": "drunet"}, {"name": "drunet", "weights": str(tmp_path / "missing.pth")}):
        with pytest.raises(ConfigError) as err:
            resolve({"method": {"name": "dip_denoiser_admm", "denoiser": denoiser}, "dataset": {"name": "denoising"}})
        assert "method.denoiser.weights" in str(err.value) and "drunet_deepinv_gray_finetune_26k.pth" in str(err.value)


def test_drunet_loads_a_local_weights_file_and_denoises_any_channel_count(tmp_path):
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in dinv.models.DRUNet(in_channels=1, out_channels=1, pretrained=None).state_dict().items()}
    gen = torch.Generator().manual_seed(0)
    weights = tmp_path / "drunet_gray.pth"  # random 1-channel weights in the pretrained files' layout
    torch.save({k: 0.01 * torch.randn(s, generator=gen) for k, s in shapes.items()}, weights)
    run = resolve({"method": {"name": "dip_denoiser_admm", "denoiser": {"name": "drunet", "weights": str(weights)}},
                   "dataset": {"name": "denoising"}})
    denoiser = build_denoiser(run.method_cfg.denoiser)
    denoiser.train()
    assert denoiser.channels == 1 and not denoiser.training  # a pretrained denoiser stays in evaluation mode
    assert not any(p.requires_grad for p in denoiser.parameters())
    with torch.no_grad():
        assert denoiser(torch.rand(1, 2, 32, 32), SIGMA).shape == (1, 2, 32, 32)  # complex: channel by channel


def test_an_unknown_denoiser_name_is_rejected_listing_the_valid_ones():
    with pytest.raises(ConfigError, match=r"method\.denoiser\.name = 'nope' is not a valid choice; valid: bm3d, drunet, nlm, tv"):
        resolve({"method": {"name": "dip_denoiser_hqs", "denoiser": {"name": "nope"}}, "dataset": {"name": "denoising"}})


def test_denoiser_settings_are_validated_and_merged_over_the_defaults():
    method = {"name": "dip_red_apg", "denoiser": {"name": "tv", "n_it_max": 7}}
    run = resolve({"method": method, "dataset": {"name": "denoising"}})
    assert run.method_cfg.denoiser == TVDenoiserConfig(n_it_max=7)
    assert run.to_dict()["method"]["denoiser"] == dataclasses.asdict(TVDenoiserConfig(n_it_max=7))
    with pytest.raises(ConfigError, match=r"method\.denoiser\.profile = 'fast' is not a valid choice; valid: np, lc"):
        resolve({"method": {"name": "dip_red_apg", "denoiser": {"profile": "fast"}}, "dataset": {"name": "denoising"}})


def test_the_registry_maps_names_to_configs_and_refuses_a_second_registration():
    assert denoiser_configs() == {"bm3d": BM3DDenoiserConfig, "tv": TVDenoiserConfig, "drunet": DRUNetDenoiserConfig,
                                  "nlm": NLMDenoiserConfig}
    with pytest.raises(ValueError, match="registered twice"):
        register_denoiser("tv", TVDenoiserConfig)(object)


@pytest.mark.parametrize("name", list(OFFLINE))
def test_each_offline_denoiser_gives_bitwise_identical_results_on_repeated_calls(name):
    y = noisy(clean_image(3))
    denoiser = build_denoiser(OFFLINE[name])
    first = denoiser(y, SIGMA)
    assert all(torch.equal(denoiser(y, SIGMA), first) for _ in range(3))  # BM3D: single-threaded by default
