"""Experiment configs: YAML in ``include/configs/``, overrides applied, validated by pydantic."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from numa_ops import paths
from numa_ops.overrides import ROOT, Override, OverrideError, expand_sweeps, parse_overrides

PositiveInt = Annotated[int, Field(strict=True, ge=1)]


class ConfigError(ValueError):
    """A config or override that cannot be used; the message names the key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class VitConfig(_Strict):
    """One ViT model of the study (vit-pytorch ``ViT`` arguments)."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
    patch_size: Annotated[int, Field(strict=True, ge=1, le=1024)]
    depth: Annotated[int, Field(strict=True, ge=1, le=256)]
    heads: Annotated[int, Field(strict=True, ge=1, le=256)]
    dim: Annotated[int, Field(strict=True, ge=1, le=65536)]
    mlp_dim: Annotated[int, Field(strict=True, ge=1, le=262144)]
    num_classes: Annotated[int, Field(strict=True, ge=1, le=100000)] = 1000


class ArmConfig(_Strict):
    """One arm of a paired placement: a NUMA node, and (memory arms) whether its host pool is pinned."""

    node: Annotated[int, Field(strict=True, ge=0, le=1023)]
    # null: test.pinned_memory; false/true: this arm's host pool pageable/pinned (a known difference to check with)
    pinned: Annotated[bool, Field(strict=True)] | None = None


class HardwareConfig(_Strict):
    """Which GPUs and NUMA nodes to place runs on (``all`` = every one found)."""

    gpu_ids: Literal["all"] | list[Annotated[int, Field(strict=True, ge=0, le=1023)]] = "all"
    # all: every node; local: each GPU's own node; remote: the node farthest from each GPU
    numa_nodes: Literal["all", "local", "remote"] | list[Annotated[int, Field(strict=True, ge=0, le=1023)]] = "all"

    # true: lanes on one GPU may measure at the same time (to study contention); false: never
    share_gpu: Annotated[bool, Field(strict=True)] = False
    # false: every run on every GPU (a placement study); true: each run once, on whichever GPU is free first
    spread: Annotated[bool, Field(strict=True)] = False
    # true: a multi-GPU pattern: one worker per GPU, each run timed on all of them at once (after a
    # common barrier), to measure contention; false: each GPU's runs timed on their own schedule
    together: Annotated[bool, Field(strict=True)] = False
    # how long a pattern's lane waits for its other GPUs (busy with other runs) before giving up;
    # the run's own timeout_s counts only once the pattern starts timing
    barrier_timeout_s: Annotated[int, Field(strict=True, ge=1, le=7 * 86400)] = 3600
    # process: numactl binds the worker's CPU and all its memory to the placement's nodes (today's binding);
    # pool: the worker's CPU and memory stay on the GPU's local node and only the host pool the batches are
    # copied from goes on the placement's memory node (mbind): a penalty then splits into DMA and CPU-side parts
    # paired: one worker measures two or more arms of each configuration, alternated trial by trial in ABBA
    # blocks, so the comparison is paired within one process (see ``paired`` and ``paired_arms``)
    placement: Literal["process", "pool", "paired"] = "process"
    # paired placement: memory: the host pool and D2H buffers on each arm's node, the launching thread on the
    # GPU's node (the DMA part of a penalty); thread: the launching thread on a core of each arm's node, memory
    # on the GPU's node (the CPU-side part); process: a whole worker process bound to each arm's node (CPU and all
    # memory), the worker and a resident partner taking turns trial by trial (the whole penalty)
    paired: Literal["memory", "thread", "process"] = "memory"
    # the arms, reference first: a node, or {node, pinned}; null: the GPU's own node, then the other nodes of
    # numa_nodes. [0, 0] is an A/A check (both arms on node 0)
    paired_arms: Annotated[list[Annotated[int, Field(strict=True, ge=0, le=1023)] | ArmConfig],
                           Field(min_length=2, max_length=8)] | None = None

    @model_validator(mode="after")
    def _non_empty(self) -> HardwareConfig:
        for key in ("gpu_ids", "numa_nodes"):
            value = getattr(self, key)
            if isinstance(value, list) and (not value or len(set(value)) != len(value)):
                raise ValueError(f"{key} must be 'all' or a non-empty list without repeats")
        if self.spread and self.together:
            raise ValueError(
                "spread and together exclude each other: share runs out over the GPUs, or run them at once"
            )
        if self.placement == "paired" and (self.spread or self.together):
            raise ValueError("placement=paired measures its arms in one worker: it excludes spread and together")
        if self.paired_arms is not None and self.placement != "paired":
            raise ValueError("paired_arms is for placement=paired")
        return self

    def arms(self) -> list[ArmConfig] | None:
        """``paired_arms`` as :class:`ArmConfig` (None: from the topology)."""
        if self.paired_arms is None:
            return None
        return [a if isinstance(a, ArmConfig) else ArmConfig(node=a) for a in self.paired_arms]


class TestConfig(_Strict):
    """What one run measures."""

    num_samples: Annotated[int, Field(strict=True, ge=1, le=10_000_000)]
    batch_size: Annotated[int, Field(strict=True, ge=1, le=65536)]
    tensor_shape: Annotated[list[Annotated[int, Field(strict=True, ge=1, le=16384)]], Field(min_length=3, max_length=3)]
    memory_size_mb: Annotated[int, Field(strict=True, ge=1, le=1_048_576)]
    compile_model: Annotated[bool, Field(strict=True)] = False
    timeout_s: Annotated[int, Field(strict=True, ge=1, le=7 * 86400)] = 600
    warmup_batches: Annotated[int, Field(strict=True, ge=0, le=10000)] = 3
    pinned_memory: Annotated[bool, Field(strict=True)] = True
    execution: Literal["eager", "cuda_graph", "compile", "compile_reduce_overhead"] = "eager"
    d2h_mode: Literal["outputs", "tokens"] = "outputs"
    # separate: NVML sampled during one extra, uncounted pass after the trials (sampling perturbs
    # launch-bound forwards); during: sampled while the trials run; off: not sampled.
    telemetry: Literal["separate", "during", "off"] = "separate"
    ci_target: Annotated[float, Field(gt=0, le=1)] = 0.02
    min_trials: Annotated[int, Field(strict=True, ge=1, le=1000)] = 6
    max_trials: Annotated[int, Field(strict=True, ge=1, le=1000)] = 20
    max_trial_time_s: Annotated[float, Field(gt=0, le=7 * 86400)] = 120.0
    # each trial lasts at least this long (whole passes of num_samples are added until it does)
    min_trial_s: Annotated[float, Field(ge=0, le=3600)] = 0.5
    # separate worker processes that measure each configuration (the process is the unit of comparison);
    # a placement study's repeats are interleaved local/remote (ABBA) in its lanes' order
    repeats: Annotated[int, Field(strict=True, ge=1, le=100)] = 1
    # placement=paired: stop when the paired difference's 95% t interval is this narrow (relative half-width),
    # sized from paired_min_blocks pilot blocks (at least twice as many blocks are measured); or after
    # paired_max_blocks blocks, or paired_max_s seconds of paired trials
    paired_target: Annotated[float, Field(gt=0, le=1)] = 0.02
    paired_min_blocks: Annotated[int, Field(strict=True, ge=3, le=1000)] = 6
    paired_max_blocks: Annotated[int, Field(strict=True, ge=3, le=10000)] = 200
    paired_max_s: Annotated[float, Field(gt=0, le=7 * 86400)] = 180.0
    # intra-op threads of the worker; null: one on a GPU run (the launching thread alone), every CPU of the
    # bound node on a CPU run
    intra_op_threads: Annotated[int, Field(strict=True, ge=1, le=1024)] | None = None

    @model_validator(mode="after")
    def _budgets(self) -> TestConfig:
        if self.max_trials < self.min_trials:
            raise ValueError(f"max_trials={self.max_trials} is below min_trials={self.min_trials}")
        if self.paired_max_blocks < self.paired_min_blocks:
            raise ValueError(
                f"paired_max_blocks={self.paired_max_blocks} is below paired_min_blocks={self.paired_min_blocks}"
            )
        if self.max_trial_time_s >= self.timeout_s:
            raise ValueError(
                f"max_trial_time_s={self.max_trial_time_s} must be below timeout_s={self.timeout_s}, "
                "or every run that misses its CI target would time out"
            )
        return self


class ProfileConfig(_Strict):
    """Nsight Systems around each lane's worker."""

    nsys: Literal["off", "on", "required"] = "off"
    # all: keep every report; failed: keep reports of workers with a failed run; none: delete them
    retention: Literal["all", "failed", "none"] = "all"
    min_free_gb: Annotated[float, Field(ge=0, le=100000)] = 10.0


class ExperimentConfig(_Strict):
    """A whole experiment: models x placements x test settings."""

    name: str
    description: str = ""
    vit_configs: Annotated[list[VitConfig], Field(min_length=1, max_length=1000)]
    hardware: HardwareConfig = HardwareConfig()
    test: TestConfig
    max_workers: Annotated[int, Field(strict=True, ge=1, le=256)] = 1
    profile: ProfileConfig = ProfileConfig()

    @model_validator(mode="after")
    def _shapes_fit_models(self) -> ExperimentConfig:
        _, height, width = self.test.tensor_shape
        for i, vit in enumerate(self.vit_configs):
            if height % vit.patch_size or width % vit.patch_size:
                raise ValueError(
                    f"vit_configs[{i}].patch_size={vit.patch_size} does not divide "
                    f"test.tensor_shape {self.test.tensor_shape}"
                )
        names = [v.name for v in self.vit_configs]
        if len(set(names)) != len(names):
            raise ValueError(f"vit_configs names must be unique, got {names}")
        if self.hardware.placement == "paired" and self.test.paired_max_s >= self.test.timeout_s:
            raise ValueError(
                f"test.paired_max_s={self.test.paired_max_s} must be below test.timeout_s={self.test.timeout_s}, "
                "or a paired run that misses its target would time out"
            )
        return self


def field_bounds(model: type[BaseModel], name: str) -> tuple[float | None, float | None]:
    """The inclusive lower and upper bounds (``ge``, ``le``) the model gives field ``name``: the trigger form takes
    its ranges from here, so no bound is written twice."""
    metadata = model.model_fields[name].metadata
    low = next((m.ge for m in metadata if getattr(m, "ge", None) is not None), None)
    high = next((m.le for m in metadata if getattr(m, "le", None) is not None), None)
    return low, high


def available_experiments() -> list[str]:
    """Names of the experiment YAML files in the configs folder."""
    return sorted(p.stem for p in configs_folder().glob("*.yaml") if not p.stem.startswith("_") and p.stem != "phases")


def configs_folder() -> Path:
    """The configs folder (``NUMA_LAB_CONFIGS`` or ``include/configs``)."""
    return paths.configs_dir()


def _read_yaml(name: str) -> dict[str, Any]:
    try:
        paths.safe_name(name, "experiment")
    except paths.UnsafePathError as exc:
        raise ConfigError(f"{exc}; available: {', '.join(available_experiments())}") from None
    path = configs_folder() / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(f"unknown experiment {name!r}; available: {', '.join(available_experiments())}")
    with path.open() as fh:
        data = yaml.safe_load(fh)
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping")
    data.setdefault("name", name)
    return data


def _set(data: dict[str, Any], override: Override) -> None:
    node: Any = data
    walked = ROOT
    for part in override.path[:-1]:
        if isinstance(part, int):
            if not isinstance(node, list) or part >= len(node):
                size = len(node) if isinstance(node, list) else "no"
                raise ConfigError(f"{override.key}: {walked} has {size} entries, no index {part}")
            node = node[part]
            walked += f"[{part}]"
        else:
            if not isinstance(node, dict):
                raise ConfigError(f"{override.key}: {walked} is not a section")
            node = node.setdefault(part, {})
            walked += f".{part}"
    last = override.path[-1]
    if isinstance(last, int):
        if not isinstance(node, list) or last >= len(node):
            raise ConfigError(f"{override.key}: {walked} has no index {last}")
        node[last] = override.value
    else:
        if not isinstance(node, dict):
            raise ConfigError(f"{override.key}: {walked} is not a section")
        node[last] = override.value


def _format(error: ValidationError) -> str:
    lines = []
    for err in error.errors():
        loc = ROOT + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        quiet = err["type"] in ("missing", "extra_forbidden") or isinstance(err["input"], dict)
        got = "" if quiet else f" (got {err['input']!r})"
        lines.append(f"{loc}: {msg}{got}")
    return "; ".join(lines)


ARCHITECTURE = ("patch_size", "depth", "heads", "dim", "mlp_dim", "num_classes")


def _rename_changed_models(data: dict[str, Any], overrides: list[Override]) -> None:
    """A model whose architecture an override changes gets a name that says so (``base`` -> ``base-depth4``).

    Records, DuckDB views and charts tell models apart by name: a depth sweep of ``base`` must not
    come out as one model. An override that also sets the name keeps that name.
    """
    changed: dict[int, list[str]] = {}
    named = set()
    for o in overrides:
        if len(o.path) == 3 and o.path[0] == "vit_configs" and isinstance(o.path[1], int):
            if o.path[2] == "name":
                named.add(o.path[1])
            elif o.path[2] in ARCHITECTURE:
                changed.setdefault(o.path[1], []).append(f"{o.path[2]}{o.value}")
    for index, parts in changed.items():
        vit = data["vit_configs"][index]
        if index not in named and isinstance(vit, dict) and isinstance(vit.get("name"), str):
            vit["name"] = "-".join([vit["name"], *parts])


def build_config(data: dict[str, Any], overrides: list[Override]) -> ExperimentConfig:
    """Apply non-sweep ``overrides`` to a raw config mapping and validate the result."""
    data = copy.deepcopy(data)
    for override in overrides:
        if not override.path:
            raise ConfigError(f"{override.text!r}: choose the experiment with the experiment parameter")
        _set(data, override)
    _rename_changed_models(data, overrides)
    try:
        return ExperimentConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format(exc)) from None


def split_experiment(texts: list[str], experiment: str | None = None) -> tuple[str, list[str]]:
    """Take ``experiment=<name>`` out of a list of override strings."""
    rest = []
    for text in texts:
        key = text.split("=", 1)[0].strip() if isinstance(text, str) else ""
        if key == ROOT:
            experiment = text.split("=", 1)[1].strip()
        else:
            rest.append(text)
    if not experiment:
        raise ConfigError(f"no experiment given; available: {', '.join(available_experiments())}")
    return experiment, rest


def load_experiment(
    name: str, overrides: list[str] | None = None, zip_keys: list[list[str]] | None = None
) -> list[ExperimentConfig]:
    """Load experiment ``name`` with ``overrides``; one config per sweep point (cartesian, or zipped).

    A sweep over GPU sets with a multi-GPU set among them (the plan's "multi-GPU patterns",
    ``gpu_ids="[0],[1],[0,1]"``) measures each set's GPUs together, unless ``hardware.together`` or
    ``hardware.spread`` is given.
    """
    data = _read_yaml(name)
    try:
        parsed = parse_overrides(list(overrides or []))
        points = expand_sweeps(parsed, zip_keys)
    except OverrideError as exc:
        raise ConfigError(str(exc)) from None
    patterns = any(
        o.path == ("hardware", "gpu_ids") and o.is_sweep and any(isinstance(v, list) and len(v) > 1 for v in o.values)
        for o in parsed
    )
    hardware = data.get("hardware") if isinstance(data.get("hardware"), dict) else {}
    explicit = any(o.path in (("hardware", "together"), ("hardware", "spread")) for o in parsed)
    if patterns and not explicit and "together" not in hardware and not hardware.get("spread"):
        data = {**copy.deepcopy(data), "hardware": {**hardware, "together": True}}
    return [build_config(data, point) for point in points]
