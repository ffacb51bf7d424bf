"""Run configuration: schema defaults, YAML files, ``--set`` overrides, validation.

The one schema is ``moleflow/schemas/config.schema.yaml``: it documents every key
and gives its default. :func:`load_config` starts from those defaults, merges a
YAML file, applies ``key.sub=value`` overrides and validates the result. An
unknown key or a bad value raises :class:`~moleflow.errors.ConfigError` with one
line naming the key.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from moleflow.errors import ConfigError

Config = dict[str, Any]


@lru_cache(maxsize=1)
def schema(name: str = "config") -> dict[str, Any]:
    """A shipped schema (JSON Schema as a dict): ``config`` (a run) or ``workflow`` (the workflow's configuration,
    which the Snakefile validates with the same file, ``workflow/schemas/config.schema.yaml`` linking to it)."""
    text = resources.files("moleflow").joinpath(f"schemas/{name}.schema.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


def _defaults(node: dict[str, Any]) -> Any:
    if node.get("type") == "object" and "properties" in node:
        return {key: _defaults(child) for key, child in node["properties"].items()}
    return copy.deepcopy(node.get("default"))


def defaults() -> Config:
    """Every key at its schema default."""
    return _defaults(schema())


def merge(base: Config, update: dict[str, Any], prefix: str = "") -> Config:
    """Deep-merge ``update`` into ``base`` in place; an unknown key raises ``ConfigError``."""
    props = _properties_at(prefix)
    for key, value in update.items():
        path = f"{prefix}{key}"
        if props is not None and key not in props:
            raise ConfigError(f"unknown config key {path!r}")
        if props is not None and "properties" in props[key] and not isinstance(value, dict):
            raise ConfigError(
                f"config key {path}: a section of keys ({path}.<key>: value), got {value!r}; "
                f"write its keys, e.g. {path}: {{{next(iter(props[key]['properties']))}: ...}}"
            )
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merge(base[key], value, prefix=f"{path}.")
        else:
            base[key] = value
    return base


def _properties_at(prefix: str) -> dict[str, Any] | None:
    node = schema()
    for part in [p for p in prefix.split(".") if p]:
        node = node.get("properties", {}).get(part, {})
    return node.get("properties")


def nested(key: str, value: Any) -> dict[str, Any]:
    """``("a.b", v)`` -> ``{"a": {"b": v}}``."""
    out: dict[str, Any] = {}
    node = out
    parts = key.strip().split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = copy.deepcopy(value)
    return out


def parse_override(text: str) -> dict[str, Any]:
    """Turn ``"a.b=value"`` into ``{"a": {"b": value}}`` (value parsed as YAML)."""
    if "=" not in text:
        raise ConfigError(f"--set expects key=value, got {text!r}")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError:
        value = raw
    return nested(key, value)


def apply_overrides(config: Config, overrides: dict[str, Any]) -> Config:
    """Apply ``{"dotted.key": value}`` overrides to a copy of ``config``; validated."""
    out = copy.deepcopy(config)
    for key, value in overrides.items():
        merge(out, nested(key, value))
    return validate(out)


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping; raise ``ConfigError`` naming the file when it is not one."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of config keys at the top level")
    return data


def _non_finite(node: Any, prefix: str = "") -> tuple[str, float] | None:
    """The first key holding an infinite or NaN number, with its value."""
    if isinstance(node, dict):
        for key, value in node.items():
            found = _non_finite(value, f"{prefix}{key}.")
            if found:
                return found
    elif isinstance(node, float) and not math.isfinite(node):
        return prefix.rstrip("."), node
    return None


def validate(config: Config) -> Config:
    """Validate ``config`` against the schema (every number finite); return it unchanged."""
    bad = _non_finite(config)
    if bad:
        raise ConfigError(f"config key {bad[0]}: must be a finite number, got {bad[1]}")
    problem = schema_problem(config, schema())
    if problem:
        raise ConfigError(problem)
    kind = config.get("dataset", {}).get("kind")
    if kind is not None:
        from moleflow.data.layouts import LAYOUTS  # the registered layouts (one module each)

        if kind not in LAYOUTS:
            raise ConfigError(
                f"config key dataset.kind: {kind!r} is not a dataset layout (registered: {', '.join(LAYOUTS)})"
            )
    features = config.get("features", {})
    if features.get("input_size", 0) > features.get("resize", 0):
        raise ConfigError(
            f"config key features.input_size: {features['input_size']} is larger than features.resize "
            f"({features['resize']}): the centre crop would pad the image with black; make input_size <= resize"
        )
    model = config.get("model", {})
    if model.get("input_jacobian") == "included" and not model.get("whitening", True):
        if model.get("whitening_fallback", "identity") != "identity":
            raise ConfigError(
                "config key model.input_jacobian: 'included' needs model.whitening true or "
                f"model.whitening_fallback identity (the {model['whitening_fallback']!r} adapter has no exact Jacobian here)"
            )
    return config


def schema_problem(document: Any, against: dict[str, Any], what: str = "config key") -> str | None:
    """The first way ``document`` breaks the JSON schema ``against``, as one line (``None`` when it is valid)."""
    validator = jsonschema.Draft202012Validator(against)
    errors = sorted(validator.iter_errors(document), key=lambda e: [str(p) for p in e.absolute_path])
    if not errors:
        return None
    error = errors[0]
    where = ".".join(str(p) for p in error.absolute_path) or "<top level>"
    if error.validator == "additionalProperties":
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        key = f"{where}.{extra[0]}" if where != "<top level>" else extra[0]
        return f"unknown {what} {key!r}"
    hint = ""
    if error.validator == "type" and "array" in str(error.validator_value) and isinstance(error.instance, str):
        hint = f"; write a list in brackets: {where}=[{error.instance}]"
    return f"{what} {where}: {error.message}{hint}"


def read_workflow_config(path: str | Path) -> dict[str, Any]:
    """A workflow configuration file (``config/config.yaml``), validated as the Snakefile validates it.

    Raises:
        ConfigError: one line naming the file and the key at fault (an empty file, a JSON record
            such as ``plan.json`` given by mistake, an unknown key).
    """
    workflow = read_yaml(path)
    if not workflow:
        raise ConfigError(f"{path}: empty; a workflow configuration needs at least datasets and studies")
    if {"runs", "jobs"} <= set(workflow):
        raise ConfigError(
            f"{path}: a plan record (the workflow's plan.json), not a workflow configuration such as config/config.yaml"
        )
    problem = schema_problem(workflow, schema("workflow"), what="workflow key")
    if problem:
        raise ConfigError(f"{path}: {problem}")
    return workflow


def profiles() -> list[str]:
    """Names of the shipped profiles (``moleflow/configs/<name>.yaml``)."""
    folder = resources.files("moleflow").joinpath("configs")
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def load_profile(name: str) -> Config:
    """Schema defaults overlaid with the shipped profile ``name``."""
    if name not in profiles():
        raise ConfigError(f"unknown profile {name!r}; available: {', '.join(profiles())}")
    text = resources.files("moleflow").joinpath(f"configs/{name}.yaml").read_text(encoding="utf-8")
    return validate(merge(defaults(), yaml.safe_load(text) or {}))


def load_config(
    path: str | Path | None = None, overrides: list[str] | None = None, base: Config | None = None
) -> Config:
    """Resolve a configuration: defaults <- YAML file <- overrides; validated.

    Args:
        path: a YAML file of config keys (``None`` for none).
        overrides: ``key.sub=value`` strings, applied in order.
        base: start from this config instead of the schema defaults.
    """
    config = copy.deepcopy(base) if base is not None else defaults()
    if path is not None:
        try:
            merge(config, read_yaml(path))
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None
    for text in overrides or []:
        merge(config, parse_override(text))
    return validate(config)


#: What a key did before it existed: a run folder's saved (resolved) configuration that lacks one of
#: these keys was made by code that behaved as this value says. :func:`load_saved_config` fills them in,
#: so an older run folder is read as what it is, not as the current defaults.
BEFORE_KEY_EXISTED: dict[str, Any] = {
    "features.resize_mode": "square",
    "features.cache_dtype": "float16",
    "strategy.sequential_linears": "trained",
    "strategy.separated_mixer": "own",
    "model.whitening_fallback": "identity",
    "model.mixer_bias": False,
    "model.global_affine": "trained",
    "model.subnet": "split",
    "training.optimizer": "adamw",
    "training.lr_schedule": "step",
    "training.drop_last": False,
    "training.nonfinite": "stop",
    "training.loss_ceiling": 1e8,
    "training.max_skipped_share": 0.05,
    "training.tail_k_rounding": "ceil",
    "strategy.sequential_adapter_updates": "once",
    "strategy.separated_global_affine": "model",
    "strategy.separated_adapters": "first",
    "strategy.ewc_fisher": "per_image",
    "strategy.ewc_fisher_images": None,
    "model.permutations": "fixed",
    "router.prototype_images": "all",
    "router.precision": "float64",
    "scoring.map_padding": "mirror",
    "evaluation.nonfinite_scores": "diverged",
}

#: Keys left out of a run's identity while they hold the value every run had before the key
#: existed: adding such a key never renames the runs (and results folders) made before it.
IDENTITY_ONLY_WHEN_SET: dict[str, Any] = {
    "strategy.knn_bank": "per_task",
    "strategy.dne_density": "pooled",
    "model.input_jacobian": "excluded",
}


def load_saved_config(path: str | Path) -> Config:
    """A run folder's saved configuration, with every key it predates set to :data:`BEFORE_KEY_EXISTED`."""
    saved = read_yaml(path)
    present = flat(saved)
    for key, value in BEFORE_KEY_EXISTED.items():
        section = key.split(".")[0]
        if key not in present and isinstance(saved.get(section), dict):
            merge(saved, nested(key, value))
    return validate(merge(defaults(), saved))


#: Keys that cannot change a run's result: where the feature cache lives, the device it runs on,
#: the number of image-decoding workers. They are left out of a run's identity (:func:`config_hash`).
NOT_IDENTITY = ("features.cache_dir", "device", "features.num_workers")


def run_identity(config: Config) -> Config:
    """``config`` without the keys of :data:`NOT_IDENTITY`, nor those of :data:`IDENTITY_ONLY_WHEN_SET` at their old value."""
    out = copy.deepcopy(config)
    for key in (*NOT_IDENTITY, *IDENTITY_ONLY_WHEN_SET):
        node = out
        *parents, last = key.split(".")
        for part in parents:
            node = node.get(part, {})
        if key not in IDENTITY_ONLY_WHEN_SET or node.get(last) == IDENTITY_ONLY_WHEN_SET[key]:
            node.pop(last, None)
    return out


def flat(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out.update(flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def flat_strings(config: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": "1"}`` (lists and None as JSON): how a config is logged and tabulated."""
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in flat(config, prefix).items()}


def differing_keys(a: Config, b: Config) -> list[str]:
    """Dotted keys whose values differ between two configurations (identity keys only)."""
    fa, fb = flat(run_identity(a)), flat(run_identity(b))
    return sorted(k for k in set(fa) | set(fb) if fa.get(k) != fb.get(k))


def config_hash(config: Config, length: int = 12) -> str:
    """Stable short hash of a resolved configuration's identity (:func:`run_identity`)."""
    blob = json.dumps(run_identity(config), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:length]
