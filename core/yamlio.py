"""YAML with every common float notation (suite files, ``--set`` values, measurement sidecars)."""
from __future__ import annotations

import re

import yaml


class YAMLLoader(yaml.SafeLoader):
    """SafeLoader whose floats include ``1e-3``, ``1E6``, ``1.0e6``, ``.5``, ``1.``, ``inf``, ``nan``
    (PyYAML's YAML 1.1 resolver reads ``1e-3`` as a string); ints stay ints."""


_FLOAT_TAG = "tag:yaml.org,2002:float"
_EXPONENT = r"(?:[eE][-+]?[0-9]+)"
YAMLLoader.yaml_implicit_resolvers = {  # the SafeLoader's resolvers without its float one
    first: [(tag, regexp) for tag, regexp in resolvers if tag != _FLOAT_TAG]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
YAMLLoader.add_implicit_resolver(_FLOAT_TAG, re.compile(
    rf"^(?:[-+]?(?:[0-9][0-9_]*\.[0-9_]*{_EXPONENT}?|\.[0-9][0-9_]*{_EXPONENT}?|[0-9][0-9_]*{_EXPONENT})"
    r"|[-+]?\.?(?:inf|Inf|INF)|\.?(?:nan|NaN|NAN))$"), list("-+0123456789.iInN"))


def yaml_load(text: str):
    """Parse YAML (suite files, ``--set`` values) with every common float notation."""
    return yaml.load(text, Loader=YAMLLoader)
