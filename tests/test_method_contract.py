"""The method contract (methods/base.py), checked on the example methods of
tests/example_methods.py: iterations are the method's, not the optimiser's; clipping
works in both optimisation modes; stages, named iterates, scalars and several stopping
rules are traced; methods never see the ground truth; bad values fail before any run."""
from __future__ import annotations

import json
from dataclasses import dataclass

import pandas as pd
import pytest
import torch
import yaml
from lightning.pytorch.callbacks import Callback

import tests.example_methods  # noqa: F401  (registers the example methods)
from benchmark.cli import main
from benchmark.config import ConfigError, resolve
from benchmark.runner import build_module, build_task, execute
from benchmark.store import RunStore
from benchmark.suites import load_suite
from core.schema import PositiveInt
from datamodules.task import Measurement
from reports.collect import load_runs
from scoring.stopping import STOPPING_RULES, StoppingRule, register_stopping_rule

TINY_NET = {"scales": 2, "channels": 8, "skip_channels": [0, 4]}


def suite_file(tmp_path, methods, datasets=("denoising",), **settings) -> str:
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump({"name": "s", "methods": list(methods), "datasets": list(datasets), "seeds": [0],
                                    "set": {"dataset.crop": 16, "run.trace_every": 1, **settings}}))
    return str(path)


def stored(results, suite="s") -> list[tuple[dict, pd.DataFrame]]:
    out = []
    for run_dir in sorted(p for p in (results / suite).iterdir() if p.is_dir()):
        trace = run_dir / "trace.parquet"
        out.append((json.loads((run_dir / "metrics.json").read_text()), pd.read_parquet(trace) if trace.exists() else None))
    return out


def tiny_run(method: str, steps: int, **method_cfg):
    return resolve({"method": {"name": method, "net": TINY_NET, **method_cfg},
                    "dataset": {"name": "denoising", "crop": 16, "image": "coffee"},
                    "run": {"max_steps": steps, "trace_every": 1, "save_images": False}})


def test_two_optimiser_manual_method_with_clipping_runs_exactly_max_steps_iterations(tmp_path):
    suite = suite_file(tmp_path, [{"name": "offset_dip", "grad_clip": 1, "net": TINY_NET}], **{"run.max_steps": 6})
    assert main(["run", suite, "--results", str(tmp_path / "r")]) == 0
    ((metrics, trace),) = stored(tmp_path / "r")
    assert metrics["status"] == "finished", metrics.get("traceback")
    assert trace["step"].tolist() == [1, 2, 3, 4, 5, 6]  # not 3 iterations traced as 2, 4, 6
    assert metrics["final_step"] == 6 and metrics["iterations"] == 6
    assert trace["offset_norm"].iloc[-1] > 0  # the second optimiser (SGD on the offset) stepped


def test_lbfgs_closure_method_runs_exactly_max_steps_and_lowers_the_loss(tmp_path):
    suite = suite_file(tmp_path, [{"name": "lbfgs_dip", "lr": 0.5, "net": TINY_NET}], **{"run.max_steps": 8})
    assert main(["run", suite, "--results", str(tmp_path / "r")]) == 0
    ((metrics, trace),) = stored(tmp_path / "r")
    assert metrics["status"] == "finished", metrics.get("traceback")
    assert trace["step"].tolist() == list(range(1, 9))
    assert trace["loss"].iloc[-1] < trace["loss"].iloc[0]


class UpdateNorms(Callback):
    """‖θ_after − θ_before‖ per iteration for the network and for the offset parameter."""

    def __init__(self):
        self.net, self.offset = [], []

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        self.before = {n: p.detach().clone() for n, p in module.named_parameters()}

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        diff = {n: (p.detach() - self.before[n]).pow(2).sum() for n, p in module.named_parameters()}
        self.net.append(float(sum(v for n, v in diff.items() if n.startswith("net.")) ** 0.5))
        self.offset.append(float(sum(v for n, v in diff.items() if n == "offset") ** 0.5))


@pytest.mark.parametrize("method", ["vanilla_dip", "offset_dip"])  # automatic and manual optimisation
def test_gradient_clipping_bounds_every_sgd_update_in_both_optimisation_modes(method, tmp_path):
    lr, clip = 0.5, 1e-3
    norms = {}
    for grad_clip in (clip, None):
        recorder = UpdateNorms()
        run = tiny_run(method, 5, optimizer="sgd", lr=lr, grad_clip=grad_clip)
        assert execute(run, f"c{grad_clip}", RunStore(tmp_path), extra_callbacks=[recorder])["status"] == "finished"
        norms[grad_clip] = recorder
    assert max(norms[clip].net) <= lr * clip * (1 + 1e-4)  # SGD step = lr · clipped gradient
    assert max(norms[None].net) > 10 * lr * clip  # so the bound above is the clipping at work
    if method == "offset_dip":
        assert max(norms[clip].offset) <= 0.05 * clip * (1 + 1e-4)  # each optimiser clipped (offset_lr 0.05)


def test_a_preparatory_stage_is_traced_before_iteration_one_and_invisible_to_peak_and_stopping(tmp_path):
    class StageStarts(Callback):
        def on_train_end(self, trainer, module):
            self.starts = module.stage_starts

    recorder = StageStarts()
    run = tiny_run("warmstart_dip", 5, warmup_steps=3)
    metrics = execute(run, "w", RunStore(tmp_path), extra_callbacks=[recorder])
    assert metrics["status"] == "finished", metrics.get("traceback")
    trace = pd.read_parquet(next(tmp_path.glob("w/*/trace.parquet")))
    assert trace["step"].tolist() == [-2, -1, 0, 1, 2, 3, 4, 5]
    assert trace["stage"].tolist() == ["warmup"] * 3 + ["reconstruct"] * 5
    assert trace.loc[trace["step"] <= 0, "psnr_ema"].isna().all()  # EMA, stopping rules: reconstruction only
    assert recorder.starts == [("warmup", -2), ("reconstruct", 1)]
    assert 1 <= metrics["peak_step"] <= 5 and metrics["final_step"] == 5 and metrics["iterations"] == 8


def test_a_splitting_method_traces_its_named_iterate_and_scalars_and_improves_on_the_noisy_image(tmp_path):
    run = resolve({"method": {"name": "split_dip", "lr": 0.01, "lam": 0.02, "net": TINY_NET},
                   "dataset": {"name": "denoising", "crop": 32, "image": "coffee", "sigma": 50},
                   "run": {"max_steps": 60, "trace_every": 5}})
    metrics = execute(run, "h", RunStore(tmp_path))
    assert metrics["status"] == "finished", metrics.get("traceback")
    trace = pd.read_parquet(next(tmp_path.glob("h/*/trace.parquet")))
    assert {"psnr_u", "beta"} <= set(trace.columns) and trace["psnr_u"].notna().all()
    assert metrics["iterate.u.final_psnr"] > metrics["degraded_psnr"]  # u = prox_TV(x) denoises
    assert metrics["peak_psnr"] > metrics["degraded_psnr"]
    assert trace["loss"].iloc[-3:].mean() < trace["loss"].iloc[:2].mean()
    images = dict(__import__("numpy").load(next(tmp_path.glob("h/*/images.npz"))))
    assert images["iterate_u"].shape == images["gt"].shape


@pytest.mark.parametrize("override, expected", [
    ("method.optimizer=adamw", "valid: adam, amsgrad, sgd"),
    ("run.max_steps=-1", "must be >= 1"),
    ("run.max_steps=0", "must be >= 1"),
    ("method.net.norm=batchnorm", "valid: group, batch, none"),
    ("run.stopping.nope={}", "valid: discrepancy, es_emv, es_wmv, running_variance"),
])
def test_bad_values_fail_before_any_run_and_say_what_is_valid(override, expected, tmp_path, capsys):
    assert main(["run", "default", "--set", override, "--results", str(tmp_path)]) == 2
    assert expected in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # nothing ran, nothing stored


def test_the_readme_example_set_method_lr_1e_3_works():
    suite = load_suite("default", {"method.lr": 1e-3} | {"run.max_steps": 3})
    from benchmark.config import parse_overrides as _overrides

    assert _overrides(["method.lr=1e-3"]) == {"method.lr": 0.001}
    assert all(r.method_cfg.lr == 0.001 for r in suite.runs if r.method == "vanilla_dip")


def test_a_ct_only_method_on_a_natural_image_is_skipped_with_its_reason_and_nothing_stored(tmp_path, capsys):
    suite = suite_file(tmp_path, ["fbp", "degraded"])
    assert main(["run", suite, "--results", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert "skipped fbp on denoising" in out and "needs fbp" in out
    assert [m["method"] for m, _ in stored(tmp_path / "r")] == ["degraded"]  # no failed fbp run


def test_methods_are_built_from_the_measurement_without_ground_truth():
    run = tiny_run("split_dip", 2)
    module = build_module(tests.example_methods.METHODS["split_dip"], run, build_task(run))
    assert isinstance(module.problem, Measurement) and not hasattr(module.problem, "gt")


def test_randomness_inside_a_method_comes_from_the_seeded_run_generator():
    def draws(seed):
        run = tiny_run("vanilla_dip", 2, input_noise_std=0.1)
        module = build_module(tests.example_methods.METHODS["vanilla_dip"], run, build_task(run))
        module.seed = seed
        torch.manual_seed(123)  # global RNG state must not matter
        first = module.network_input().clone()
        torch.manual_seed(456)
        return first, module.network_input().clone()

    a, b = draws(0), draws(0)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and not torch.equal(a[0], a[1])
    assert not torch.equal(draws(1)[0], a[0])


@dataclass
class LowestLossConfig:
    patience: PositiveInt = 5  # iterations without a new lowest loss before stopping


class LowestLoss(StoppingRule):
    """Pick the iterate with the lowest loss so far; stop after ``patience`` without a new one."""

    def on_iterate(self, step, out):
        self.g = out.loss
        if self.pick_step is None or out.loss < self.best:
            self.best, self.pick_step, self.pick_x = out.loss, step, out.x.clone()
        elif self.stop_step is None and step > self.pick_step + self.cfg.patience:
            self.stop_step = step


def test_several_stopping_rules_run_in_one_run_with_namespaced_metrics(tmp_path):
    if "lowest_loss" not in STOPPING_RULES:
        register_stopping_rule("lowest_loss", LowestLossConfig, "test rule: lowest loss so far")(LowestLoss)
    run = resolve({"method": {"name": "vanilla_dip", "lr": 0.01, "net": TINY_NET},
                   "dataset": {"name": "denoising", "crop": 16},
                   "run": {"max_steps": 30, "trace_every": 1, "stopping": {
                       "running_variance": {"window": 5, "patience": 5}, "lowest_loss": {"patience": 3}}}})
    metrics = execute(run, "es", RunStore(tmp_path))
    assert metrics["status"] == "finished", metrics.get("traceback")
    row = load_runs(tmp_path).iloc[0]  # the reports derive the gap (oracle peak − pick)
    for rule in ("running_variance", "lowest_loss"):
        assert 1 <= metrics[f"es.{rule}.step"] <= 30
        assert row[f"es.{rule}.gap_db"] == pytest.approx(metrics["peak_psnr"] - metrics[f"es.{rule}.psnr"])
    trace = pd.read_parquet(next(tmp_path.glob("es/*/trace.parquet")))
    assert {"es.running_variance.g", "es.lowest_loss.g"} <= set(trace.columns)
    with pytest.raises(ConfigError, match="valid: .*running_variance"):
        resolve({"method": {"name": "vanilla_dip"}, "dataset": {"name": "denoising"}, "run": {"stopping": {"wmv": {}}}})


def test_a_broken_method_file_is_listed_with_its_error_and_other_commands_still_work(tmp_path, monkeypatch, capsys):
    import methods
    import methods.registry as registry

    (tmp_path / "broken_plugin.py").write_text("import not_a_module_anywhere\n")
    monkeypatch.setattr(methods, "__path__", [*methods.__path__, str(tmp_path)])
    monkeypatch.setattr(registry, "BROKEN", {})
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "methods.broken_plugin" in out and "not_a_module_anywhere" in out
    assert "vanilla_dip" in out
    assert load_suite("default").runs  # running still works


def test_runs_store_code_and_library_versions_and_the_report_flags_mixed_code(tmp_path):
    results = tmp_path / "results"
    for image in ("coffee", "astronaut"):
        run = resolve({"method": {"name": "degraded"}, "dataset": {"name": "denoising", "crop": 16, "image": image}})
        metrics = execute(run, "v", RunStore(results))
        assert metrics["versions"]["torch"] and metrics["versions"]["deepinv"] and "astra-toolbox" in metrics["versions"]
        assert metrics["code"]["method_source_sha256"]
    report = tmp_path / "out"
    assert main(["report", "--results", str(results), "--out", str(report)]) == 0
    assert "different code versions" not in (report / "v" / "table.md").read_text()
    path = next(results.glob("v/*/metrics.json"))
    metrics = json.loads(path.read_text())
    metrics["code"]["git_commit"] = "0" * 40  # as if computed by another commit
    path.write_text(json.dumps(metrics))
    assert main(["report", "--results", str(results), "--out", str(report)]) == 0
    assert "different code versions" in (report / "v" / "table.md").read_text()


def test_a_learnable_input_is_a_switch_with_its_own_learning_rate(tmp_path):
    class InputChange(Callback):
        def on_train_start(self, trainer, module):
            self.z0 = module.z.detach().clone()
            self.lrs = {g["name"]: g["lr"] for g in trainer.optimizers[0].param_groups}

        def on_train_end(self, trainer, module):
            self.moved = float((module.z.detach() - self.z0).abs().max())

    recorder, fixed = InputChange(), InputChange()
    assert execute(tiny_run("vanilla_dip", 3, learn_input=True, input_lr=0.05), "l", RunStore(tmp_path),
                   extra_callbacks=[recorder])["status"] == "finished"
    assert execute(tiny_run("vanilla_dip", 3), "f", RunStore(tmp_path), extra_callbacks=[fixed])["status"] == "finished"
    assert recorder.lrs == {"net": 1e-3, "input": 0.05} and recorder.moved > 0
    assert fixed.lrs == {"net": 1e-3} and fixed.moved == 0
