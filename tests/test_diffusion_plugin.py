"""The pretrained-diffusion methods (methods/diffusion.py) are registered but never run without
weights: suites skip them with the reason, constructing one without ``method.checkpoint`` is a
clear error naming the option and where the weights come from, a checkpoint path that does not
exist is rejected when the config is resolved, and with a checkpoint the registered sampler runs."""
from __future__ import annotations

import pytest
import torch

from benchmark.config import ConfigError, IncompatibleError, resolve
from benchmark.runner import build_task
from methods import diffusion
from methods.registry import load_all

NAMES = ["score_mri", "mcg", "dps", "udig_dip"]
DENOISING = {"name": "denoising", "crop": 16}


@pytest.mark.parametrize("name", NAMES)
def test_without_a_checkpoint_suites_skip_it_and_building_it_names_the_option_and_the_weights(name):
    spec = load_all()[name]
    assert spec.kind == "baseline" and "method.checkpoint" in spec.cls.skip(spec.config(), None)
    with pytest.raises(IncompatibleError, match="needs pretrained diffusion weights"):
        resolve({"method": {"name": name}, "dataset": DENOISING})
    task = build_task(resolve({"method": {"name": "degraded"}, "dataset": DENOISING}))
    with pytest.raises(diffusion.MissingWeightsError) as err:
        spec.cls(spec.config(), task.measurement())
    assert "method.checkpoint" in str(err.value) and "github.com/" in str(err.value)


def test_a_checkpoint_path_that_does_not_exist_is_rejected_before_any_run(tmp_path):
    with pytest.raises(ConfigError, match=r"method.checkpoint = .*does not exist"):
        resolve({"method": {"name": "dps", "checkpoint": str(tmp_path / "missing.pt")}, "dataset": DENOISING})


def test_with_a_checkpoint_the_registered_sampler_runs_and_without_one_the_error_says_how_to_register(tmp_path,
                                                                                                     monkeypatch):
    checkpoint = tmp_path / "weights.pt"
    torch.save({}, checkpoint)
    run = resolve({"method": {"name": "dps", "checkpoint": str(checkpoint), "options": {"steps": 3}},
                   "dataset": DENOISING})  # with weights nothing is missing: no skip
    spec, task = load_all()["dps"], build_task(run)
    monkeypatch.setattr(diffusion.SAMPLERS, "entries", {})
    with pytest.raises(NotImplementedError, match=r"register_sampler\('dps'\)"):
        spec.cls(run.method_cfg, task.measurement()).reconstruct()

    seen = {}

    @diffusion.register_sampler("dps")
    def toy_sampler(problem, path, cfg, generator):  # a stand-in of the test only, never registered by the project
        seen.update(path=path, steps=cfg.options["steps"], has_gt=hasattr(problem, "gt"))
        return problem.degraded

    x = spec.cls(run.method_cfg, task.measurement()).reconstruct()
    assert torch.equal(x, task.degraded)
    assert seen == {"path": str(checkpoint), "steps": 3, "has_gt": False}
    with pytest.raises(ValueError, match="no diffusion method"):
        diffusion.register_sampler("ddpm")
