"""Survey B §5 computational methods (issue 21): the synthetic-ellipses data set, supervised
pre-training (cached, resumable) and the warm start it gives every DIP method, subspace DIP
(orthonormal sparse basis, only k coefficients trained, the data term's gradient reaching them)
and stochastic DIP (unbiased subset gradients, seeded draws); the trace's wall time."""
from __future__ import annotations

import copy

import pandas as pd
import pytest
import torch

import methods.pretraining as pretraining
from benchmark.config import resolve
from benchmark.runner import build_module, build_task, execute
from benchmark.store import RunStore
from datamodules.ellipses import EllipsesDataModule, simulate_ellipses
from datamodules.operators.ct import fbp_image
from methods.networks import build_network
from methods.registry import load_all
from methods.subspace_dip import subspace_basis

METHODS = load_all()
TINY_NET = {"scales": 2, "channels": 8, "skip_channels": [0, 4]}
CT = {"name": "ct_calibration", "image": "ellipses", "image_size": 32, "n_angles": 8, "noise": 0.05}
WARM = {"steps": 12, "snapshots": 6, "n_train": 16, "n_val": 4, "batch_size": 4, "checkpoint_every": 4}


@pytest.fixture(autouse=True)
def _setup(tmp_path, monkeypatch):
    torch.set_num_threads(1)
    monkeypatch.setenv("DIPBENCH_CACHE", str(tmp_path / "cache"))  # a fresh pre-training cache per test
    yield


def config(method: str, steps: int = 4, seed: int = 0, **method_cfg):
    return resolve({"method": {"name": method, "net": TINY_NET, **method_cfg}, "dataset": CT,
                    "run": {"max_steps": steps, "trace_every": 1, "save_images": False, "stopping": {}, "seed": seed}})


def module_of(run):
    task = build_task(run)
    return build_module(METHODS[run.method], run, task), task


# -- the ellipses data set ---------------------------------------------------------------------
def test_ellipses_are_simulated_through_the_task_operator_deterministically():
    task = build_task(config("vanilla_dip"))
    fbp = lambda y: fbp_image(task.physics, y, 10)[0]  # noqa: E731
    a = simulate_ellipses(task.physics, fbp, 32, 3, 0.05, seed=0)
    b = simulate_ellipses(task.physics, fbp, 32, 3, 0.05, seed=0)
    assert a["gt"].shape == a["fbp"].shape == (3, 1, 32, 32)
    assert torch.equal(a["gt"], b["gt"]) and torch.equal(a["fbp"], b["fbp"])
    assert 0 <= float(a["gt"].min()) and float(a["gt"].max()) <= 1
    assert not torch.equal(a["gt"][0], a["gt"][1])  # different phantoms
    # the FBP input is the task's own reconstruction of the noiseless-operator measurement
    clean = fbp_image(task.physics, task.physics.A(a["gt"][:1]), 10)[0]
    assert 0 < float((a["fbp"][:1] - clean).abs().mean()) < float(clean.abs().mean())  # noisy, but close
    dm = EllipsesDataModule(task.physics, fbp, 32, n_train=6, n_val=2, noise=0.05, batch_size=4)
    dm.setup()
    batch = next(iter(dm.train_dataloader()))
    assert batch["fbp"].shape == (4, 1, 32, 32) and len(dm.val["gt"]) == 2


# -- pre-training and warm start ---------------------------------------------------------------
def test_pretraining_is_cached_and_resumes_after_an_interruption(tmp_path, monkeypatch):
    run = config("vanilla_dip", input="fbp", warm_start=WARM)
    task = build_task(run)
    problem, ws, net = task.measurement(), run.method_cfg.warm_start, run.method_cfg.net

    class Interrupt(Exception):
        pass

    original = pretraining.SnapshotWriter.on_train_batch_end

    def interrupt_at_step_10(self, trainer, module, *args):
        original(self, trainer, module, *args)
        if trainer.global_step == 10:
            raise Interrupt

    monkeypatch.setattr(pretraining.SnapshotWriter, "on_train_batch_end", interrupt_at_step_10)
    with pytest.raises(Interrupt):
        pretraining.pretrained_network(ws, net, True, problem)
    monkeypatch.setattr(pretraining.SnapshotWriter, "on_train_batch_end", original)
    resumed = pretraining.pretrained_network(ws, net, True, problem)
    assert resumed.info["resumed"] and resumed.snapshot_steps == [2, 4, 6, 8, 10, 12]
    assert resumed.snapshots.shape == (6, sum(p.numel() for p in build_network(net, 1, 1, True).parameters()))

    monkeypatch.setattr(pretraining, "_train", lambda *a: pytest.fail("a cached pre-training was trained again"))
    cached = pretraining.pretrained_network(ws, net, True, problem)
    assert all(torch.equal(cached.state_dict[k], resumed.state_dict[k]) for k in cached.state_dict)
    other = copy.deepcopy(ws)
    other.steps = 13
    assert pretraining.cache_key(other, net, True, problem) != pretraining.cache_key(ws, net, True, problem)


def test_a_warm_started_run_starts_at_the_pretrained_networks_psnr(tmp_path):
    run = config("vanilla_dip", input="fbp", warm_start=WARM)
    metrics = execute(run, "w", RunStore(tmp_path / "r"))
    assert metrics["status"] == "finished", metrics.get("traceback")
    trace = pd.read_parquet(next((tmp_path / "r" / "w").glob("*/trace.parquet")))
    # the pre-trained network, loaded independently from its cache file, on the task's FBP image
    task = build_task(run)
    saved = torch.load(next((tmp_path / "cache" / "pretrained").glob("*/pretrained.pt")), weights_only=True)
    net = build_network(run.method_cfg.net, 1, 1, True)
    net.load_state_dict(saved["state_dict"])
    with torch.no_grad():
        expected = task.psnr(net(task.extras["fbp"]))
    assert trace.loc[trace["step"] == 1, "psnr"].item() == pytest.approx(expected, abs=1e-4)
    assert metrics["first_psnr"] == pytest.approx(expected, abs=1e-4)
    assert metrics["pretrain"]["steps"] == WARM["steps"] and "wall_time_s" in trace
    assert trace["wall_time_s"].is_monotonic_increasing
    random_start = execute(config("vanilla_dip", input="fbp"), "v", RunStore(tmp_path / "r"))
    assert random_start["first_psnr"] != pytest.approx(expected, abs=1e-3)  # so the equality above is the warm start


def test_warm_start_needs_the_fbp_input():
    run = config("vanilla_dip", warm_start=WARM)  # input: noise
    with pytest.raises(ValueError, match="input: fbp"):
        module_of(run)


# -- subspace DIP -------------------------------------------------------------------------------
def test_subspace_basis_is_orthonormal_sparse_as_configured_and_keeps_the_top_leverage_rows():
    gen = torch.Generator().manual_seed(0)
    snapshots = torch.randn(12, 500, generator=gen) * torch.linspace(0.1, 2, 500)  # uneven leverage
    index, q = subspace_basis(snapshots, dim=5, keep=80)
    assert index.shape == (80,) and q.shape == (80, 5)
    assert torch.allclose(q.T.double() @ q.double(), torch.eye(5, dtype=torch.float64), atol=1e-5)
    u = torch.linalg.svd(snapshots.double().T, full_matrices=False).U[:, :5]
    leverage = u.pow(2).sum(1)
    assert set(index.tolist()) == set(torch.topk(leverage, 80).indices.tolist())
    # same span as the masked singular vectors M U
    projected = q.double() @ (q.double().T @ u[index])
    assert torch.allclose(projected, u[index], atol=1e-6)
    with pytest.raises(ValueError, match="fewer than method.dim"):
        subspace_basis(snapshots, dim=5, keep=4)
    with pytest.raises(ValueError, match="snapshots"):
        subspace_basis(snapshots, dim=13, keep=80)


def test_subspace_dip_trains_only_k_coefficients_and_the_data_term_reaches_them(tmp_path):
    run = config("subspace_dip", dim=3, sparsity=0.3, warm_start=WARM)
    module, task = module_of(run)
    p = sum(x.numel() for x in module.net.parameters())
    assert [g.name for g in module.parameter_groups()] == ["coefficients"]
    assert sum(x.numel() for g in module.parameter_groups() for x in g.params) == 3
    assert int((module.basis.abs().sum(1) > 0).sum()) == module.keep == round(0.3 * p)
    # c = 0 is the pre-trained network
    with torch.no_grad():
        assert torch.equal(module(), module.net(module.z))
    # ∇_c L = (MU)ᵀ ∇_θ L at θ = γ(c), for a c off the origin
    module = module.double()
    c = torch.tensor([0.3, -0.2, 0.1], dtype=torch.float64, requires_grad=True)
    y = task.y.double()
    loss = module.data_fidelity(module.physics.A(module.output(c)), y)
    (grad_c,) = torch.autograd.grad(loss, c)
    net = copy.deepcopy(module.net).requires_grad_(True)
    with torch.no_grad():
        for (name, param), value in zip(net.named_parameters(), module.parameters_at(c.detach()).values()):
            param.copy_(value)
    loss_theta = module.data_fidelity(module.physics.A(net(module.z)), y)
    grad_theta = torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss_theta, list(net.parameters()))])
    assert grad_c.abs().max() > 0
    assert torch.allclose(grad_c, module.basis.T @ grad_theta[module.index], rtol=1e-8, atol=1e-12)


def test_subspace_dip_runs_with_lbfgs_and_lowers_the_loss(tmp_path):
    metrics = execute(config("subspace_dip", steps=6, dim=3, warm_start=WARM), "s", RunStore(tmp_path / "r"))
    assert metrics["status"] == "finished", metrics.get("traceback")
    trace = pd.read_parquet(next((tmp_path / "r" / "s").glob("*/trace.parquet")))
    assert trace["step"].tolist() == list(range(1, 7))
    assert trace["loss"].iloc[-1] < trace["loss"].iloc[0]
    assert metrics["n_trainable"] == 3 and metrics["n_params"] > 100 * 3
    assert metrics["subspace"]["kept_parameters"] == round(0.25 * metrics["n_params"])


# -- stochastic DIP -----------------------------------------------------------------------------
@pytest.mark.parametrize("loss", ["normalised", "mse", "half_sse"])
@pytest.mark.parametrize("subsets", [2, 3])  # 3 does not divide the 8 angles: unequal subsets
def test_stochastic_gradient_averaged_over_all_subsets_is_the_full_gradient(loss, subsets):
    module, task = module_of(config("stochastic_dip", subsets=subsets, loss=loss))
    module = module.double()
    y = task.y.double()
    params = list(module.net.parameters())
    x = module.net(module.z)
    full = torch.autograd.grad(module.data_fidelity(module.physics.A(x), y), params)
    mean = [torch.zeros_like(p) for p in params]
    for b in range(subsets):
        grads = torch.autograd.grad(module.subset_loss(module.net(module.z), y, b), params)
        for m, g in zip(mean, grads):
            m += g / subsets
    for m, f in zip(mean, full):
        assert torch.allclose(m, f, rtol=1e-9, atol=1e-12)
    assert sum(len(a) for a in module.subset_angles) == task.y.shape[-2]  # a partition of the angles


def test_stochastic_dip_draws_subsets_from_the_run_seed(tmp_path):
    def trace(seed, folder):
        metrics = execute(config("stochastic_dip", steps=12, seed=seed, subsets=4), folder, RunStore(tmp_path / "r"))
        assert metrics["status"] == "finished", metrics.get("traceback")
        return pd.read_parquet(next((tmp_path / "r" / folder).glob("*/trace.parquet")))

    a, b, c = trace(0, "a"), trace(0, "b"), trace(1, "c")
    assert a["subset"].tolist() == b["subset"].tolist() and a["loss"].tolist() == b["loss"].tolist()
    assert a["subset"].tolist() != c["subset"].tolist()
    assert a["subset"].nunique() > 1


def test_stochastic_dip_is_skipped_without_a_ct_operator():
    from benchmark.config import IncompatibleError

    with pytest.raises(IncompatibleError, match="ct"):
        resolve({"method": {"name": "stochastic_dip", "net": TINY_NET}, "dataset": {"name": "denoising", "crop": 16}})
