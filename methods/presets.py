"""Presets: the settings of a method that depend on the task family, one YAML file per
method × family, ``methods/presets/<family>/<method>.yaml``::

    method: dip_tv_joint
    family: ct
    values:
      tv_weight:
        value: 0.06
        source: "calibrated: tune__dip_tv_joint__ct (ct_calibration: head, ellipses), code 1a2b3c4, 2026-12-07,
                 best mean peak PSNR, table methods/presets/ct/dip_tv_joint.table.csv"

Every value says where it comes from: ``paper: <where>`` or ``calibrated: <suite, code
version, date, rule, table>`` (written by ``python -m benchmark tune``). When a run is
resolved, the preset of its method and its dataset's family fills the settings that the
suite and ``--set`` leave unset (theirs always win), and the run's config records which
preset supplied each value (``method.preset``, part of the run id).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import yaml

from core.schema import ConfigError
from core.yamlio import yaml_load

PRESETS_DIR = Path(__file__).parent / "presets"


@dataclass(frozen=True)
class PresetValue:
    value: object
    source: str  # "paper: …" or "calibrated: …"
    size: int | None = None  # image side it was calibrated at (None: a paper value, any size)

    def source_at(self, size: int | None) -> str:
        """The source as a run at image side ``size`` records it: a calibrated value used at
        another size says it was transferred (docs/conventions.md §1, §14)."""
        if self.size is None or size is None or size == self.size:
            return self.source
        return f"transferred from {self.size}²: {self.source}"


def preset_path(method: str, family: str, root: Path | None = None) -> Path:
    return (root or PRESETS_DIR) / family / f"{method}.yaml"


def load_preset(method: str, family: str | None, config_cls: type, root: Path | None = None) -> dict[str, PresetValue]:
    """The preset of ``method`` for ``family`` (empty when there is none); a malformed file
    is a one-line :class:`ConfigError` naming it."""
    if family is None:
        return {}
    path = preset_path(method, family, root)
    if not path.is_file():
        return {}
    try:
        data = yaml_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"preset {path} is not valid YAML ({exc}); fix it or rerun `benchmark tune`") from None
    fields = {f.name for f in dataclasses.fields(config_cls)}
    values = data.get("values") if isinstance(data, dict) else None
    if data.get("method") != method or data.get("family") != family or not isinstance(values, dict):
        raise ConfigError(f"preset {path} must say method: {method}, family: {family} and give a values: mapping")
    out = {}
    for key, entry in values.items():
        if key not in fields:
            raise ConfigError(f"preset {path}: {key!r} is not a setting of {method}; valid: {', '.join(sorted(fields))}")
        if not isinstance(entry, dict) or "value" not in entry or not str(entry.get("source") or "").strip():
            raise ConfigError(f"preset {path}: {key} needs a value and a source (paper: … or calibrated: …)")
        size = entry.get("size")
        if size is not None and (not isinstance(size, int) or size < 1):
            raise ConfigError(f"preset {path}: {key}.size must be the image side it was calibrated at, got {size!r}")
        out[key] = PresetValue(entry["value"], str(entry["source"]).strip(), size)
    return out


def write_preset(method: str, family: str, values: dict[str, PresetValue], comment: str = "",
                 root: Path | None = None) -> Path:
    """Write (replace) the preset file; values not given keep their existing entries."""
    path = preset_path(method, family, root)
    path.parent.mkdir(parents=True, exist_ok=True)
    existing = {}
    if path.is_file():
        existing = (yaml_load(path.read_text()) or {}).get("values") or {}
    merged = {**existing, **{k: {"value": v.value, "source": v.source, **({"size": v.size} if v.size else {})}
                             for k, v in values.items()}}
    header = "".join(f"# {line}\n" for line in comment.splitlines()) if comment else ""
    body = yaml.safe_dump({"method": method, "family": family, "values": merged}, sort_keys=False, width=100,
                          allow_unicode=True)
    tmp = path.with_suffix(".yaml.tmp")
    tmp.write_text(header + body)
    tmp.replace(path)
    return path
