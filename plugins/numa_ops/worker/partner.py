"""``python -m numa_ops.worker.partner``: a resident partner of a whole-process paired run.

The paired worker (bound to its first arm's node) starts one partner per other arm, each bound by numactl to its
arm's node (CPU and all memory), and the two take turns trial by trial. The partner builds the same run, warms
it up, and then answers the worker's requests, one JSON object a line on stdin and stdout:

- ``{"sizes": {...}}``: the passes' sizes, so that both processes' trials are alike; answered ``{"ok": true}``;
- ``{"trial": {"pipelined": bool}}``: settle one batch, then one trial; answered with its serial rate, its
  CPU-speed control and the launching CPU;
- ``{"finish": true}``: the copy pass and the partner's metrics; answered ``{"metrics": {...}}``, then it exits.

Any failure is answered ``{"error": "..."}`` and the partner exits.
"""

from __future__ import annotations

import json
import sys
import traceback
from typing import Any, TextIO


def _answer(out: TextIO, **message: Any) -> None:
    out.write(json.dumps(message, default=str) + "\n")
    out.flush()


def serve(inp: TextIO, out: TextIO) -> int:
    """Build the run named on the first line, then answer requests until ``finish`` (or end of input)."""
    import torch

    from numa_ops.specs import RunSpec
    from numa_ops.worker.engine import Engine
    from numa_ops.worker.launch_thread import pin_launching_thread
    from numa_ops.worker.measure import PassSizes, Trials, compose_metrics, current_cpu, one_trial
    from numa_ops.worker.telemetry import Telemetry

    engine = None
    try:
        first = json.loads(inp.readline())
        spec = RunSpec.from_json(first["spec"])
        node = int(first["node"])
        cuda = spec.gpu_id is not None and torch.cuda.is_available()
        device = torch.device("cuda:0" if cuda else "cpu")
        torch.set_num_threads(1 if cuda else max(1, spec.test.intra_op_threads or 1))
        core = pin_launching_thread() if torch.get_num_threads() == 1 else None
        engine = Engine(spec.model, spec.test, device, "process", node)
        engine.warmup(spec.test.warmup_batches)
        trials = Trials(launch_cpu=core.cpu if core else current_cpu())
        _answer(out, ready=True, pid=__import__("os").getpid())
        sizes: PassSizes | None = None
        for line in inp:
            request = json.loads(line)
            if "sizes" in request:
                sizes = PassSizes(**request["sizes"])
                _answer(out, ok=True)
            elif "trial" in request:
                if sizes is None:
                    raise RuntimeError("a trial was asked for before the passes' sizes")
                engine.serial_pass(1)  # settle after the other process's trial
                one_trial(engine, sizes, trials, core, pipelined=bool(request["trial"].get("pipelined")))
                _answer(out, rate=trials.serial_rates[-1], control=trials.controls[-1], cpu=trials.trial_cpus[-1],
                        trial_s=trials.trial_s[-1])
            elif "finish" in request:
                if sizes is None:
                    raise RuntimeError("finish was asked for before any trial")
                trials.seconds = float(sum(trials.trial_s))
                copies = engine.copy_bandwidth()
                metrics = compose_metrics(spec, engine, sizes, trials, copies, Telemetry(None), "off", core,
                                          break_even=False)
                _answer(out, metrics=metrics)
                return 0
        return 0
    except Exception as exc:  # noqa: BLE001 - the worker records the reason with the run
        _answer(out, error=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc(limit=6))
        return 1
    finally:
        if engine is not None:
            engine.close()


if __name__ == "__main__":
    sys.exit(serve(sys.stdin, sys.stdout))
