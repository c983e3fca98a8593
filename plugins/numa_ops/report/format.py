"""Numbers and tables as a person reads them: ``2.40e8``, ``0.213``, ``1,234``, and ``-`` for nothing."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from numa_ops import labels

# Test settings a row is keyed by beyond its model, shape, execution and host memory, in words: a table or chart
# names those that differ between its rows (numa_ops.db.views.SETTINGS: rows never pool them).
VARYING_SETTINGS = {
    "host": "host",
    "gpu_id": "GPU",
    "d2h_mode": "D2H mode",
    "memory_size_mb": "host pool MB",
    "num_samples": "samples per run",
    "compile_model": "compile",
    "warmup_batches": "warm-up batches",
    "min_trial_s": "min trial s",
    "intra_op_threads": "intra-op threads",
    "telemetry": "telemetry",
    "patch_size": "patch",
    "heads": "heads",
    "mlp_dim": "MLP dim",
    "width": "width",
    "channels": "channels",
    "study": "study",
    "sweep_point": "sweep point",
}


def varying(df: pd.DataFrame) -> dict[str, str]:
    """The settings of ``VARYING_SETTINGS`` that take several values in ``df``'s rows, with their words."""
    return {col: words for col, words in VARYING_SETTINGS.items() if col in df and df[col].dropna().nunique() > 1}


def shapes(df: pd.DataFrame, image: str = "height", *, memory: bool = False) -> pd.Series:
    """Each row's shape in words (:func:`numa_ops.labels.shape`), with ``, pageable host memory`` where its pool was
    pageable when ``memory``."""
    return pd.Series(
        [labels.shape(r["execution"], r[image], r["batch_size"])
         + (labels.memory_words(r["pinned_memory"]) if memory else "") for _, r in df.iterrows()],
        index=df.index, dtype=object,
    )


def configurations(df: pd.DataFrame, image: str = "height", *, name_memory: bool = False) -> pd.Series:
    """Each row's configuration in words (:func:`numa_ops.labels.configuration`)."""
    return pd.Series(
        [labels.configuration(r["model_name"], r["execution"], r[image], r["batch_size"], r["pinned_memory"],
                              name_memory=name_memory) for _, r in df.iterrows()],
        index=df.index, dtype=object,
    )


def paired_configuration(paired: pd.DataFrame) -> pd.Series:
    """Each paired comparison's configuration in words, its host memory named; the settings that differ between
    rows named too."""
    config = configurations(paired, name_memory=True)
    for col, words in varying(paired).items():
        config = config + ", " + words + " " + paired[col].map(human)
    return config


def human(value: Any) -> str:
    """One cell: three significant figures, scientific beyond 1e5 or below 1e-3 (``2.40e8``), ``-`` for none."""
    if value is None or isinstance(value, str) and value in ("None", "nan", "NaN"):
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float) and not isinstance(value, bool):
        if isinstance(value, float) and not math.isfinite(value):
            return "-"
        if value == 0:
            return "0"
        if float(value).is_integer() and abs(value) < 1e5:
            return f"{int(value):,}"
        if abs(value) >= 1e5 or abs(value) < 1e-3:
            mantissa, exponent = f"{value:.2e}".split("e")
            return f"{mantissa}e{int(exponent)}"
        return f"{value:.3g}" if abs(value) >= 1 or abs(value) < 0.01 else f"{value:.3f}"
    try:
        if pd.isna(value):
            return "-"
    except (TypeError, ValueError):
        pass
    if hasattr(value, "item"):  # a numpy scalar
        return human(value.item())
    return str(value)


def interval(low: Any, high: Any) -> str:
    """``low to high`` in ``human`` figures, or ``-`` without an interval."""
    if human(low) == "-" or human(high) == "-":
        return "-"
    return f"{human(low)} to {human(high)}"


def reason_text(error: Any) -> str:
    """A failed run's reason as recorded (line breaks and all), or that it recorded none."""
    return "no reason recorded" if error is None or isinstance(error, float) and math.isnan(error) else str(error)


def table_html(df: pd.DataFrame, classes: str = "data", formatters: dict[str, Any] | None = None) -> str:
    """An HTML table of ``df`` with every cell in ``human`` form unless ``formatters`` names its column."""
    formatters = formatters or {}
    shown = df.copy()
    for col in shown.columns:
        fmt = formatters.get(col, human)
        shown[col] = [fmt(v) for v in shown[col]]
    return shown.to_html(index=False, classes=classes, escape=True)
