"""scripts/gpu_check.sh end to end on the CPU at tiny sizes: every part runs and lands under $OUT.
(Its bench part is ``fpbench.run.bench.run_bench``, tested in test_beyond.py, and its device tests are
tests/test_device.py, which the suite runs on the CPU; both are left out here for time.)"""

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_the_device_script_runs_every_part_on_the_cpu(tmp_path):
    # the script's python3 is the one running the tests (with POT), whether or not its venv is activated
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    env = dict(os.environ, OUT=str(tmp_path), FPBENCH_DEVICE="cpu", FPBENCH_TINY="1", FPBENCH_SKIP="bench,device_tests",
               PATH=path)
    proc = subprocess.run(["bash", "scripts/gpu_check.sh"], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    parts = json.loads((tmp_path / "summary.json").read_text())["parts"]
    assert all(p["ok"] for p in parts.values()), parts
    assert parts["paper_throughput"]["models"] == 12 and parts["paper_throughput"]["ensemble_steps_per_second"] > 0
    assert parts["chunked_paper_run"]["returncode"] == 4  # stopped at its tiny budget, resumable
    assert list((tmp_path / "results" / "ensembles").glob("*.pt")), "the stopped run keeps its checkpoint"
    assert parts["bench"] == parts["device_tests"] == {"ok": True, "skipped": True}
