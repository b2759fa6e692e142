"""The algorithm terms are really there (issue 18). For every penalty or coupling term, one
iteration's θ-gradient changes exactly as the term predicts when its weight changes: at weight 0
it is vanilla DIP's gradient (the data term's, (2/n)·½‖x − y‖² for A = I), the change is linear
in the weight (g(2w) − g(0) = 2(g(w) − g(0))) and equals the autograd gradient of the term
written independently as in Survey B, times 2/n (docs/conventions.md §13: no ½ on any quadratic
term, the papers' weights). Plus: the denoiser ADMM denoises x + λ, self-guided DIP averages its
N realisations, and on a tiny task vanilla DIP overfits (final PSNR well below its peak) while
DIP + TV does not.

The gradient tests call ``training_step`` directly on a float64 copy of a tiny module, with
``gradient_step`` replaced by a recorder of the gradients (no optimiser, no trainer); the state
a term couples to (u, duals, …) is set to random values first, so that no term is trivially
proportional to x. The reconstruction-stage updates of u, duals and inputs are tested in
test_survey_b_*.py and test_survey_a_deepred.py; here only what enters the θ-gradient."""
from __future__ import annotations

import copy
from dataclasses import replace

import pytest
import torch

from benchmark.config import resolve
from benchmark.runner import build_module, build_task, execute
from benchmark.store import RunStore
from methods.denoisers import build_denoiser
from methods.registry import load_all

METHODS = load_all()
TINY_NET = {"scales": 2, "channels": 8, "skip_channels": [0, 4]}
DENOISING = {"name": "denoising", "crop": 16, "sigma": 50}
FAST_TV = {"name": "tv", "n_it_max": 10}


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)  # the machine's cores are shared (conftest sets 2)
    yield


def build(method: str, **method_cfg):
    """A float64 module of ``method`` on a 16² denoising task, and the measurement y."""
    run = resolve({"method": {"name": method, "net": TINY_NET, **method_cfg}, "dataset": DENOISING,
                   "run": {"max_steps": 4, "save_images": False, "stopping": {}}})
    task = build_task(run)
    module = build_module(METHODS[method], run, task).double()
    return module, task.y.double()


def params(module) -> list[torch.Tensor]:
    """What the gradient is taken with respect to: θ, and z when it is learnt (self-guided DIP)."""
    return list(module.net.parameters()) + ([module.z] if module.cfg.learn_input else [])


def flat(grads) -> torch.Tensor:
    return torch.cat([g.reshape(-1) for g in grads])


def step_gradient(module, y, weights: dict | None = None, attrs: dict | None = None, sgd: float = 0.0):
    """The gradient of iteration 1's loss, on a copy of ``module`` with config ``weights`` (and
    attributes ``attrs``) changed; the run's generator restarts, so every call draws the same
    noise. ``sgd`` > 0 also moves the parameters by −sgd·g (for what follows the step)."""
    module.reseed_generator()
    m = copy.deepcopy(module)
    m.cfg = replace(m.cfg, **(weights or {}))
    for name, value in (attrs or {}).items():
        setattr(m, name, value)
    m.iteration = 1
    recorded = []

    def record(loss, *groups):
        grads = torch.autograd.grad(loss, params(m))
        recorded.append(flat(grads))
        with torch.no_grad():
            for p, g in zip(params(m), grads):
                p -= sgd * g

    m.gradient_step = record
    out = m.training_step({"y": y}, 0)
    if m.automatic_optimization:  # Lightning would backpropagate the returned loss
        record(out["loss"])
    (g,) = recorded
    return g, m, out


def term_gradient(module, term) -> torch.Tensor:
    return flat(torch.autograd.grad(term, params(module)))


def forward_differences(x: torch.Tensor) -> torch.Tensor:
    """(Dx)_i = (x_{i+down} − x_i, x_{i+right} − x_i), zero past the last row / column: (B, C, H, W, 2)."""
    down, right = torch.zeros_like(x), torch.zeros_like(x)
    down[..., :-1, :] = x[..., 1:, :] - x[..., :-1, :]
    right[..., :, :-1] = x[..., :, 1:] - x[..., :, :-1]
    return torch.stack([down, right], dim=-1)


def isotropic_tv(x: torch.Tensor) -> torch.Tensor:
    """Σ_{c,i} ‖(D x_c)_i‖₂ (Survey B §4.2); 0 (and a zero subgradient) where both differences vanish."""
    sq = forward_differences(x).pow(2).sum(-1)
    return torch.where(sq > 0, sq.clamp_min(1e-300).sqrt(), torch.zeros_like(sq)).sum()


def uniform(shape, seed: int, scale: float) -> torch.Tensor:
    """U[−scale, scale), float64, from its own seeded generator."""
    return scale * (2 * torch.rand(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) - 1)


# -- each term: (method, weight field, w, settings, state set before the step, the term at weight w) -----------
# A term is written as Survey B writes it (the ½ included) times 2/n, n = pixels: docs/conventions.md §13.
# ``m`` is the module (its state already set), ``x`` its network output f_θ(z) of iteration 1.
def _tv_joint(m, x, w):  # eq 21: ½‖x − y‖² + α_paper·TV(x), α_paper = w/2 (TV is not a square: §13)
    return 2 / x.numel() * (w / 2) * isotropic_tv(x)


def _tv_hqs(m, x, w):  # Alg. 4 line 6: (μ_1/2)‖x − u‖², μ_1 = λ/α_1 (first outer step: α_1 = tv_max)
    return 2 / x.numel() * (w / m.cfg.tv_max / 2) * (x - m.u).pow(2).sum()


def _wtv_admm(m, x, w):  # eq 28: (γ/2)‖Dx − v + λ/γ‖², w the scaled dual λ/γ
    return 2 / x.numel() * (w / 2) * (forward_differences(x) - m.v + m.w).pow(2).sum()


def _red_apg(m, x, w):  # Alg. 5 line 5: (λL/2)‖x − u‖²
    return 2 / x.numel() * (w * m.cfg.mixing / 2) * (x - m.u).pow(2).sum()


def _deepred(m, x, w):  # DeepRED's θ-step: (μ/2)‖f − x_aux + u‖² (u the scaled dual)
    return 2 / x.numel() * (w / 2) * (x - m.x_aux + m.u).pow(2).sum()


def _denoiser_hqs(m, x, w):  # eq 32: (μ_1/2)‖x − u‖², μ_1 = λ/σ_1 (σ_1 = sigma_max)
    return 2 / x.numel() * (w / m.cfg.sigma_max / 2) * (x - m.u).pow(2).sum()


def _denoiser_admm(m, x, w):  # Alg. 6 line 5: (β/2)‖x − u + μ‖², μ the scaled dual
    return 2 / x.numel() * (w / 2) * (x - m.u + m.dual).pow(2).sum()


def _input_penalty(m, x, w):  # aSeqDIP eq 36: (λ/2)‖f_θ(z) − z‖²; self-guided eq 34: (λ/2)‖x̃ − z‖², x̃ the average
    return 2 / x.numel() * (w / 2) * (x - m.z).pow(2).sum()


def _random_state(**scales):
    """Sets each named state tensor (image-shaped; v and w gradient-shaped) to U[−scale, scale)."""
    def set_state(m):
        for seed, (name, scale) in enumerate(scales.items()):
            shape = (1, *m.problem.x_shape, 2) if name in ("v", "w") else (1, *m.problem.x_shape)
            setattr(m, name, uniform(shape, seed, scale))
    return set_state


TERMS = {
    "dip_tv_joint": ("tv_weight", 0.2, {}, None, _tv_joint),
    "dip_tv_hqs": ("splitting_strength", 0.05, {"inner_steps": 2, "tv_iterations": 10}, _random_state(u=1.0), _tv_hqs),
    "dip_wtv_admm": ("admm_weight", 5.0, {}, _random_state(v=0.1, w=0.1), _wtv_admm),
    "dip_red_apg": ("lam", 1.0, {"inner_steps": 2, "denoiser": FAST_TV}, _random_state(u=1.0), _red_apg),
    "deepred": ("mu", 0.5, {"update_every": 2, "denoiser": FAST_TV}, _random_state(x_aux=1.0, u=0.1), _deepred),
    "dip_denoiser_hqs": ("splitting", 0.05, {"inner_steps": 2, "denoiser": FAST_TV}, _random_state(u=1.0), _denoiser_hqs),
    "dip_denoiser_admm": ("beta", 5.0, {"inner_steps": 2, "denoiser": FAST_TV}, _random_state(u=1.0, dual=0.1),
                          _denoiser_admm),
    "self_guided_dip": ("lam", 1.0, {"realisations": 3}, None, _input_penalty),
    "aseqdip": ("lam", 1.0, {}, None, _input_penalty),
}
ATTRIBUTE_WEIGHTS = {"deepred"}  # the weight is a module attribute (DeepRED may schedule λ and μ)


def term_module(method):
    field, w, settings, set_state, term = TERMS[method]
    module, y = build(method, **settings)
    if set_state:
        set_state(module)
    return module, y, field, w, term


def gradient_at(method, module, y, field, weight, **kw):
    if method in ATTRIBUTE_WEIGHTS:
        return step_gradient(module, y, attrs={field: weight}, **kw)
    return step_gradient(module, y, weights={field: weight}, **kw)


def realisations(m) -> list[torch.Tensor]:
    """Self-guided DIP's f_θ(z + η_i), i = 1 … N, one network call each, η_i ~ U[0, ρ·max|z|) the N
    draws of iteration 1 from the run's generator (restarted, as step_gradient does)."""
    m.reseed_generator()
    eta = m.cfg.rel_noise * m.z.detach().abs().max() * m.rand_like(m.z.expand(m.cfg.realisations, *m.z.shape[1:]))
    return [m.net(m.z + eta[i:i + 1]) for i in range(m.cfg.realisations)]


def method_output(method, m) -> torch.Tensor:
    """The x the method's terms see at iteration 1, computed here: f_θ(z) (the run's generator
    restarted, for perturbed inputs), for self-guided DIP the average of its N realisations."""
    if method == "self_guided_dip":
        return sum(realisations(m)) / m.cfg.realisations
    m.reseed_generator()
    return m.net(m.network_input())


@pytest.mark.parametrize("method", list(TERMS))
def test_the_theta_gradient_moves_by_the_terms_gradient_linearly_in_its_weight(method):
    module, y, field, w, term = term_module(method)
    g0, _, _ = gradient_at(method, module, y, field, 0.0)
    g1, _, _ = gradient_at(method, module, y, field, w)
    g2, _, _ = gradient_at(method, module, y, field, 2 * w)
    x = method_output(method, module)  # on the module as it was before the step (the copies updated their state)
    expected = term_gradient(module, term(module, x, w))  # the term alone, written as the paper's
    scale = float(g0.norm())
    assert float(expected.norm()) > 0.05 * scale, (float(expected.norm()), scale)  # the term moves the gradient visibly
    torch.testing.assert_close(g1 - g0, expected, rtol=1e-7, atol=1e-10 * scale)
    torch.testing.assert_close(g2 - g0, 2 * (g1 - g0), rtol=1e-7, atol=1e-10 * scale)  # linear in the weight
    # weight 0: the data term alone, D = ‖x − y‖²/‖I‖_F² = (2/n)·½‖x − y‖² (its own mean for DeepRED's mse)
    data = 2 / x.numel() * 0.5 * (method_output(method, module) - y).pow(2).sum()
    torch.testing.assert_close(g0, term_gradient(module, data), rtol=1e-7, atol=1e-10 * scale)


# methods whose network input is vanilla DIP's (noise of the same seed; DeepRED: its own noise settings);
# aSeqDIP's is the degraded image, given to vanilla DIP by hand; self-guided DIP's is learnt and perturbed N times
VANILLA_SETTINGS = {"loss": "normalised"}
DEEPRED_INPUT = {"loss": "mse", "input_dist": "uniform", "input_channels": 32, "input_noise_std": 0.033}


@pytest.mark.parametrize("method", [m for m in TERMS if m != "self_guided_dip"])
def test_at_weight_zero_the_theta_gradient_is_vanilla_dips(method):
    module, y, field, _, _ = term_module(method)
    g0, _, _ = gradient_at(method, module, y, field, 0.0)
    if method == "aseqdip":  # vanilla DIP fed aSeqDIP's input z⁽⁰⁾ (the degraded image)
        vanilla, _ = build("vanilla_dip", **VANILLA_SETTINGS, input_channels=module.z.shape[1])
        vanilla.z = module.z.clone()
    else:
        vanilla, _ = build("vanilla_dip", **(DEEPRED_INPUT if method == "deepred" else VANILLA_SETTINGS))
    g_vanilla, _, _ = step_gradient(vanilla, y)
    torch.testing.assert_close(g0, g_vanilla, rtol=1e-10, atol=0)


def test_the_admm_denoiser_denoises_the_network_output_plus_the_dual():
    module, y = build("dip_denoiser_admm", inner_steps=1, sigma=0.05, denoiser=FAST_TV)
    _random_state(u=1.0, dual=0.2)(module)  # λ⁽⁰⁾ ≠ 0
    dual = module.dual.clone()
    _, m, _ = step_gradient(module, y, sgd=0.5)  # iteration 1 = N_sub: a step, then the u- and dual updates
    denoiser = build_denoiser(m.cfg.denoiser).double()
    with torch.no_grad():
        x_k = m.net(m.z)  # x⁽ᵏ⁾ = f_θ(z) after the step
        u = denoiser(x_k + dual, 0.05)  # Alg. 6 line 9: u⁽ᵏ⁾ = D_σ(x⁽ᵏ⁾ + λ⁽ᵏ⁻¹⁾)
        torch.testing.assert_close(m.u, u, rtol=1e-9, atol=1e-12)
        assert float((m.u - denoiser(x_k, 0.05)).abs().max()) > 0.05  # not D(x): the dual is in the input
        torch.testing.assert_close(m.dual, dual + x_k - u, rtol=1e-9, atol=1e-12)  # line 10


def test_self_guided_dip_averages_its_n_realisations_each_through_the_network():
    module, y = build("self_guided_dip", realisations=3)
    _, m, out = step_gradient(module, y)  # no parameter moves: m.net and m.z are iteration 1's
    with torch.no_grad():
        singles = realisations(m)  # one realisation at a time
    torch.testing.assert_close(out["iterates"]["raw"], sum(singles) / 3, rtol=1e-9, atol=1e-12)  # x̃ = (1/N) Σ f(z + ηᵢ)
    for single in singles:  # the realisations differ, so x̃ is none of them
        assert float((out["iterates"]["raw"] - single).abs().max()) > 1e-4


# -- overfitting: vanilla DIP's PSNR falls after its peak, DIP + TV's does not ---------------------------------
OVERFIT_NET = {"scales": 3, "channels": 16, "skip_channels": [0, 4, 4]}


def overfit_run(tmp_path, method: str, **method_cfg) -> dict:
    run = resolve({"method": {"name": method, "net": OVERFIT_NET, "lr": 0.01, "optimizer": "amsgrad",
                              "loss": "normalised", **method_cfg},
                   "dataset": {"name": "denoising", "crop": 32, "sigma": 50},
                   "run": {"max_steps": 1000, "trace_every": 10, "save_images": False, "stopping": {}}})
    metrics = execute(run, "objective_terms", RunStore(tmp_path / method))
    assert metrics["status"] == "finished", metrics.get("traceback")
    return metrics


@pytest.mark.slow
def test_vanilla_dip_overfits_a_tiny_denoising_task_and_dip_plus_tv_does_not(tmp_path):
    # 32² crop, σ = 50/255 (noisy 15.0 dB), AMSGrad lr 0.01 (no step bursts, docs/conventions.md §12), 1000 steps.
    # Measured: vanilla peak 19.8 dB at step 28, final 15.2; TV (α = 0.5) peak 22.7 at 807, final 22.7
    vanilla = overfit_run(tmp_path, "vanilla_dip")
    tv = overfit_run(tmp_path, "dip_tv_joint", tv_weight=0.5)
    assert vanilla["final_psnr"] < vanilla["peak_psnr"] - 3, (vanilla["peak_psnr"], vanilla["final_psnr"])
    assert vanilla["final_psnr"] < vanilla["degraded_psnr"] + 1  # it has fitted the noise
    assert tv["final_psnr"] > tv["peak_psnr"] - 0.2, (tv["peak_psnr"], tv["final_psnr"])
    assert tv["peak_step"] > 500  # its peak is a plateau late in the run, not an early arc
    assert tv["final_psnr"] > vanilla["final_psnr"] + 5
