"""One registry for every plugin kind (core/registry.py): the same duplicate-name policy for
each kind, and `benchmark list` walks all of them."""
import json

import pytest

from benchmark import plugins
from benchmark.cli import main
from core.registry import REGISTRIES, Entry, RegistrationConflict


def test_every_plugin_kind_lives_in_the_one_registry_and_refuses_a_second_name_alike():
    plugins.load_all()
    assert {"method", "dataset", "stopping rule", "network", "denoiser", "diffusion sampler",
            "measurement-file loader"} <= set(REGISTRIES)
    for kind, registry in REGISTRIES.items():
        if not len(registry):
            continue
        name = next(iter(registry))
        with pytest.raises(RegistrationConflict, match=f"{kind} '{name}' from .* is already registered by "):
            registry.add(Entry(name=name, target=object, origin="test"))
        assert registry[name].origin != "test"


def test_list_walks_every_kind(capsys):
    assert main(["list", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    components = listing["components"]
    assert {"unet", "skipnet", "deep_decoder"} <= set(components["network"])
    assert {"bm3d", "tv"} <= set(components["denoiser"])
    assert "CTSinogramConfig" in components["measurement-file loader"]
