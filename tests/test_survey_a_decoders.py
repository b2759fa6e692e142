"""Survey A's restricted-parameter methods: the deep decoder (Heckel & Hand 2019; Survey A
§III-C1; Survey B §3.2, Prop. 1) and the deep random projector (DRP, Survey A eq (20)). Each
fits a tiny denoising problem (loss falls, best PSNR beats the noisy image) and shows its
distinctive property: the decoder has fewer parameters than pixels and cannot fit pure noise
where the U-Net can; DRP changes only the input and the normalisation layers."""
from __future__ import annotations

import math

import pytest
import torch
from lightning.pytorch.callbacks import Callback

from benchmark.config import resolve
from benchmark.runner import build_module, build_task, execute
from benchmark.store import RunStore
from methods.networks import UNetConfig, build_network
from methods.networks.decoder import DeepDecoderConfig
from methods.registry import load_all

METHODS = load_all()
NORM = (torch.nn.BatchNorm2d, torch.nn.GroupNorm)


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)  # tiny tensors; the autouse fixture in conftest.py sets 2 again for the next test


def n_params(module) -> int:
    return sum(p.numel() for p in module.parameters())


def denoising_run(method: str, steps: int, **method_cfg):
    return resolve({"method": {"name": method, **method_cfg},
                    "dataset": {"name": "denoising", "crop": 32, "sigma": 50},
                    "run": {"max_steps": steps, "trace_every": 10, "ssim_every": 1000, "save_images": False}})


class Recorder(Callback):
    """The loss of every iteration, and the module's input and state before and after training."""

    def __init__(self):
        self.losses = []

    def on_train_start(self, trainer, module):
        self.module = module
        self.z0 = module.z.detach().clone()
        self.state0 = {k: v.detach().clone() for k, v in module.state_dict().items()}
        self.optimised = {id(p) for opt in trainer.optimizers for g in opt.param_groups for p in g["params"]}

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.losses.append(float(outputs["loss"]))

    def on_train_end(self, trainer, module):
        self.z1 = module.z.detach().clone()
        self.state1 = {k: v.detach().clone() for k, v in module.state_dict().items()}


def fits_the_noisy_image(metrics: dict, recorder: Recorder) -> None:
    assert metrics["status"] == "finished", metrics.get("traceback")
    assert sum(recorder.losses[-10:]) < 0.8 * sum(recorder.losses[:10])
    assert metrics["peak_psnr"] > metrics["degraded_psnr"] + 3


def fit_noise(net: torch.nn.Module, z: torch.Tensor, eta: torch.Tensor, steps: int, lr: float) -> float:
    """min over Adam iterates of ‖G(z) − η‖² / ‖η‖² (an upper estimate of the best fit)."""
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    best = math.inf
    for _ in range(steps):
        opt.zero_grad()
        residual = (net(z) - eta).pow(2).sum()
        residual.backward()
        opt.step()
        best = min(best, residual.item())
    return best / float(eta.pow(2).sum())


def decoder_and_seed(cfg: DeepDecoderConfig, n: int, seed: int = 0):
    torch.manual_seed(seed)
    net = build_network(cfg, cfg.channels, 1, sigmoid=False)  # signed noise: linear output
    net.output_size = (n, n)
    z = 0.1 * torch.rand(1, cfg.channels, *cfg.input_size(n, n), generator=torch.Generator().manual_seed(seed))
    return net, z


# -- the network ----------------------------------------------------------------------------------
def test_default_decoder_has_survey_a_parameter_count_fewer_than_the_pixels_of_a_512_rgb_image():
    cfg = DeepDecoderConfig()  # 6 layers × 128 channels
    net = build_network(cfg, cfg.channels, 3, sigmoid=True)
    assert n_params(net) == 100_224  # Survey A §III-C1: "approximately 100,224 parameters"
    assert n_params(net) < 3 * 512 * 512  # … "significantly fewer than … 786,432 pixels"
    assert not any(isinstance(m, torch.nn.Conv2d) and m.kernel_size != (1, 1) for m in net.modules())  # 1×1 only
    assert cfg.input_size(512, 512) == (16, 16)  # 5 upsamplings ×2


def test_decoder_reaches_sizes_not_divisible_by_its_upsampling_factor():
    cfg = DeepDecoderConfig(layers=4, channels=8)
    net = build_network(cfg, 8, 3, sigmoid=True)
    net.output_size = (37, 45)
    sizes = cfg.level_sizes(37, 45)
    assert sizes[-1] == (37, 45)
    assert all(2 * a - 1 <= b <= 2 * a for (a, _), (b, _) in zip(sizes, sizes[1:], strict=False))  # about ×2 each
    out = net(torch.rand(1, 8, *cfg.input_size(37, 45)))
    assert out.shape == (1, 3, 37, 45) and 0 <= out.min() and out.max() <= 1


def test_decoder_refuses_an_image_size_input_and_a_missing_output_size():
    cfg = DeepDecoderConfig(layers=3, channels=4)
    net = build_network(cfg, 4, 1, sigmoid=True)
    with pytest.raises(ValueError, match="output size"):
        net(torch.rand(1, 4, 4, 4))
    net.output_size = (16, 16)
    with pytest.raises(ValueError, match="seed of size"):
        net(torch.rand(1, 4, 16, 16))


@pytest.mark.parametrize("layers", [1, 3, 5])
def test_decoder_min_size_is_the_smallest_square_output_it_accepts(layers):
    cfg = DeepDecoderConfig(layers=layers, channels=4)
    net = build_network(cfg, 4, 1, sigmoid=True)
    n = cfg.min_size
    net.output_size = (n, n)
    assert net(torch.rand(1, 4, *cfg.input_size(n, n))).shape == (1, 1, n, n)
    net.output_size = (n - 1, n - 1)
    with pytest.raises((RuntimeError, ValueError)):
        net(torch.rand(1, 4, *cfg.input_size(n - 1, n - 1)))


# -- Survey B Prop. 1: the deep decoder cannot fit noise -----------------------------------------
def test_proposition_1_bound_holds_in_its_regime():
    """Survey B Prop. 1 (Heckel & Hand 2019): if k²·log(n0)/n ≤ 1/32, min ‖G − η‖² ≥ (1 − 20 k² log(n0)/n)·‖η‖².
    Stated for one layer; Heckel & Hand report the same numerically for deeper decoders. Any fit
    below the bound would refute it; Adam at a large learning rate tries hard for 600 steps."""
    n, cfg = 64, DeepDecoderConfig(layers=4, channels=5)  # seed 8×8: n0 = 64
    k, n0, pixels = cfg.channels, math.prod(cfg.input_size(n, n)), n * n
    assert k**2 * math.log(n0) / pixels <= 1 / 32  # the proposition's assumption
    bound = 1 - 20 * k**2 * math.log(n0) / pixels
    assert bound > 0.4  # not vacuous at this size
    net, z = decoder_and_seed(cfg, n)
    eta = torch.randn(1, 1, n, n, generator=torch.Generator().manual_seed(1))
    assert fit_noise(net, z, eta, 600, lr=0.05) >= bound


def test_decoder_keeps_most_of_pure_noise_while_the_unet_fits_it_in_as_many_steps():
    n, steps = 32, 300
    eta = torch.randn(1, 1, n, n, generator=torch.Generator().manual_seed(1))
    cfg = DeepDecoderConfig(layers=4, channels=8)
    decoder, z = decoder_and_seed(cfg, n)
    assert n_params(decoder) < n * n  # under-parameterised (328 < 1024)
    # the decoder gets the better of its paper lr (Survey A Fig. 6) and a large one
    kept = min(fit_noise(decoder, z, eta, steps, lr=0.008), fit_noise(*decoder_and_seed(cfg, n), eta, steps, lr=0.05))
    torch.manual_seed(0)
    unet = build_network(UNetConfig(scales=3, channels=16, skip_channels=[0, 4, 4]), 1, 1, sigmoid=False)
    assert n_params(unet) > 10 * n * n  # over-parameterised
    z_unet = 0.1 * torch.randn(1, 1, n, n, generator=torch.Generator().manual_seed(2))
    fitted = fit_noise(unet, z_unet, eta, steps, lr=0.005)
    assert kept > 0.5  # most of ‖η‖² stays in the residual
    assert fitted < 0.05  # the U-Net drives the residual to ~0


# -- the deep_decoder method ---------------------------------------------------------------------
def test_deep_decoder_defaults_follow_survey_a_and_the_reference_code():
    cfg = METHODS["deep_decoder"].config()
    assert cfg.lr == 0.008 and cfg.net.layers == 6 and cfg.net.channels == 128 and cfg.net.norm == "batch"
    assert cfg.input == "noise" and cfg.input_dist == "uniform" and cfg.input_scale == 0.1


def test_deep_decoder_denoises_a_tiny_image_with_fewer_parameters_than_pixels(tmp_path):
    recorder = Recorder()
    metrics = execute(denoising_run("deep_decoder", 150, net={"layers": 4, "channels": 16}), "dd", RunStore(tmp_path),
                      extra_callbacks=[recorder])
    fits_the_noisy_image(metrics, recorder)
    module = recorder.module
    assert n_params(module.net) < 3 * 32 * 32  # fewer parameters than output values
    assert tuple(recorder.z0.shape) == (1, 16, 4, 4)  # the fixed seed: k channels at 32 / 2³
    assert torch.equal(recorder.z0, recorder.z1)  # … and it stays fixed (learn_input: false)


def test_deep_decoder_method_rejects_an_image_size_input():
    with pytest.raises(Exception, match="noise"):
        resolve({"method": {"name": "deep_decoder", "input": "adjoint"}, "dataset": {"name": "denoising", "crop": 32}})


# -- deep random projector -----------------------------------------------------------------------
def test_drp_defaults_follow_the_official_denoising_code():
    cfg = METHODS["deep_random_projector"].config()
    assert (cfg.lr, cfg.tv_weight, cfg.input_channels, cfg.learn_input) == (0.1, 0.45, 3, True)
    assert cfg.net.name == "skipnet" and cfg.net.scales == 1 and cfg.net.channels == 64 and cfg.net.norm == "batch"


def test_drp_denoises_a_tiny_image(tmp_path):
    recorder = Recorder()
    metrics = execute(denoising_run("deep_random_projector", 100, net={"channels": 16}), "drp", RunStore(tmp_path),
                      extra_callbacks=[recorder])
    fits_the_noisy_image(metrics, recorder)


@pytest.mark.parametrize("net", [{"channels": 8}, {"name": "deep_decoder", "layers": 3, "channels": 8}],
                         ids=["skipnet", "deep_decoder"])
def test_drp_changes_only_the_input_and_the_normalisation_parameters(tmp_path, net):
    recorder = Recorder()
    metrics = execute(denoising_run("deep_random_projector", 10, net=net), "drp", RunStore(tmp_path),
                      extra_callbacks=[recorder])
    assert metrics["status"] == "finished", metrics.get("traceback")
    module = recorder.module
    norms = {name for name, m in module.named_modules() if isinstance(m, NORM)}
    affine = {f"{name}.{p}" for name in norms for p in ("weight", "bias")}
    weights = {k for k, _ in module.named_parameters()} - affine - {"z"}
    assert weights and all(isinstance(module.get_submodule(k.rsplit(".", 1)[0]), torch.nn.Conv2d) for k in weights)
    for k in weights:  # every convolution keeps its random initial weights, bit for bit
        assert torch.equal(recorder.state0[k], recorder.state1[k]), k
    assert all(not torch.equal(recorder.state0[k], recorder.state1[k]) for k in affine)  # each norm layer trained
    assert not torch.equal(recorder.z0, recorder.z1)  # the input is optimised
    n_affine = sum(module.get_parameter(k).numel() for k in affine)
    trainable = [p for p in module.parameters() if p.requires_grad]
    assert sum(p.numel() for p in trainable) == n_affine + module.z.numel()
    assert recorder.optimised == {id(p) for p in trainable}  # exactly what the optimiser steps


def test_drp_tv_weight_smooths_the_output(tmp_path):
    def final_tv(weight):
        run = denoising_run("deep_random_projector", 30, net={"channels": 8}, tv_weight=weight)
        recorder = Recorder()
        assert execute(run, "drp", RunStore(tmp_path / str(weight)), extra_callbacks=[recorder])["status"] == "finished"
        with torch.no_grad():
            x = recorder.module.net(recorder.module.input_norm(recorder.module.z))
        return (x.diff(dim=-1).abs().mean() + x.diff(dim=-2).abs().mean()).item()

    assert final_tv(5.0) < 0.5 * final_tv(0.0)


def test_drp_needs_normalisation_layers():
    run = denoising_run("deep_random_projector", 5, net={"channels": 8, "norm": "none"})
    with pytest.raises(ValueError, match="norm"):
        build_module(METHODS["deep_random_projector"], run, build_task(run))
