"""What a run folder was asked for, read from its ``plan.json``: the phase and DAG run that planned it, the
form's overrides and sweeps (or a shell run's overrides), and the sample count(s) of its studies. Shown by
the report, the NUMA report tab and the nav page, so that run folders can be told apart."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class RunRequest:
    phase: str | None = None
    dag_run: str | None = None
    overrides: tuple[str, ...] = ()
    num_samples: tuple[int, ...] = ()  # each distinct experiment.test.num_samples of the plan, smallest first

    @classmethod
    def from_plan(cls, plan: dict[str, Any]) -> RunRequest:
        params = plan.get("params") if isinstance(plan.get("params"), dict) else None
        overrides = ([*(params.get("overrides") or []), *(params.get("sweeps") or [])] if params
                     else plan.get("overrides") or [])
        studies = plan.get("studies") if isinstance(plan.get("studies"), dict) else {}
        samples = {config["test"].get("num_samples") for configs in studies.values() if isinstance(configs, list)
                   for config in configs if isinstance(config, dict) and isinstance(config.get("test"), dict)}
        return cls(phase=plan.get("phase") if isinstance(plan.get("phase"), str) else None,
                   dag_run=plan.get("dag_run") if isinstance(plan.get("dag_run"), str) else None,
                   overrides=tuple(str(o) for o in overrides if isinstance(o, str)),
                   num_samples=tuple(sorted(n for n in samples if isinstance(n, int))))

    @classmethod
    def of_folder(cls, folder: Path) -> RunRequest:
        """The request of run folder ``folder`` (empty where its plan.json is missing or unreadable)."""
        try:
            plan = json.loads((folder / "plan.json").read_text())
        except (OSError, ValueError):
            return cls()
        return cls.from_plan(plan) if isinstance(plan, dict) else cls()

    @property
    def samples(self) -> str:
        return ", ".join(f"{n:,}" for n in self.num_samples) or "-"

    def sentence(self) -> str:
        """One line: ``phase P, DAG run R, num_samples N, overrides: ...`` (the parts that are known)."""
        parts = [f"phase {self.phase}" if self.phase else "run from the shell (no phase)"]
        if self.dag_run:
            parts.append(f"DAG run {self.dag_run}")
        parts.append(f"num_samples {self.samples}")
        parts.append(f"overrides: {' '.join(self.overrides) or 'none'}")
        return ", ".join(parts)
