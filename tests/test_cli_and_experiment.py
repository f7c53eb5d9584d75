"""The command line and the end-to-end experiment on real (offline) Split-MNIST."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from packnet.__main__ import main


@pytest.fixture(scope="module")
def default_run():
    import io
    from contextlib import redirect_stdout

    buffer = io.StringIO()
    with redirect_stdout(buffer):
        assert main(["--json"]) == 0
    return json.loads(buffer.getvalue())


def test_cli_defaults_reach_97_percent_with_zero_forgetting(default_run):
    assert default_run["average_accuracy"] >= 0.97
    assert default_run["forgetting"] == [0.0] * 5
    R = default_run["accuracy_matrix"]
    assert len(R) == 5 and all(R[i][j] is None for i in range(5) for j in range(i + 1, 5))
    assert all(R[4][j] == R[j][j] for j in range(5))  # final accuracy == accuracy when learned, exactly


def test_cli_reports_capacity_from_the_owner_maps(default_run):
    owned = default_run["capacity"]["owned"]
    assert list(owned) == ["0", "1", "2", "3", "4"]
    assert math.isclose(owned["0"], 0.25, abs_tol=1e-3)
    assert math.isclose(sum(owned.values()) + default_run["capacity"]["free"], 1.0)


def test_cli_text_output_has_the_matrix_forgetting_and_capacity(capsys):
    assert main(["--tasks", "2", "--epochs", "1", "--retrain-epochs", "0"]) == 0
    out = capsys.readouterr().out
    for piece in ["after task", "average accuracy", "forgetting per task (points): 0.00, 0.00",
                  "Capacity (measured from the owner maps)", "task 1: available 0.75, used 0.1875"]:
        assert piece in out


@pytest.mark.parametrize("bench", ["permuted", "rotated"])
def test_cli_other_benchmarks_run(bench, capsys):
    assert main(["--benchmark", bench, "--tasks", "2", "--epochs", "1", "--retrain-epochs", "0",
                 "--model", "cnn", "--json", "--shared-policy", "per_task", "--pruning", "global"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["forgetting"] == [0.0, 0.0]
    assert result["config"]["benchmark"] == bench


def test_cli_help_and_bad_device():
    out = subprocess.run([sys.executable, "-m", "packnet", "--help"], capture_output=True, text=True, check=True)
    assert "--prune-ratio" in out.stdout and "--json" in out.stdout
    if not __import__("torch").cuda.is_available():
        assert main(["--device", "cuda"]) == 2
