"""The command line and the end-to-end experiment on real (offline) Split-MNIST."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch

from packnet.bench.cli import main


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


def _tiny_tasks(n: int = 2) -> list:
    from torch.utils.data import TensorDataset

    from packnet.bench.data import Task

    g = torch.Generator().manual_seed(7)
    tasks = []
    for i in range(n):
        x, y = torch.randn(48, 6, generator=g), torch.randint(0, 2, (48,), generator=g)
        tasks.append(Task(i, f"t{i}", TensorDataset(x[:32], y[:32]), TensorDataset(x[32:], y[32:]), (0, 1)))
    return tasks


def _tiny_model(n: int = 2) -> "torch.nn.Module":
    from packnet import TaskHeads

    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(), TaskHeads(16, 2, task_ids=range(n)))


def test_undefined_figures_are_json_null_so_strict_parsers_accept_the_summary():
    from packnet.bench.baselines import run_joint

    joint = run_joint(_tiny_model(), _tiny_tasks(), epochs=1, batch_size=16, progress=False)
    assert any(f != f for f in joint.forgetting)  # joint training's forgetting is undefined (nan) ...
    summary = json.loads(json.dumps(joint.to_dict(), allow_nan=False))  # ... and strict JSON accepts it
    assert summary["backward_transfer"] is None and None in summary["forgetting"]
    assert summary["accuracy_matrix"][0] == [None, None]


def test_run_packnet_passes_amp_to_training_and_retraining(monkeypatch):
    from packnet import PackNet
    from packnet.bench.experiment import run_packnet

    seen = []
    for name in ("train_task", "retrain"):
        original = getattr(PackNet, name)

        def spy(self, *args, _original=original, _name=name, **kwargs):
            seen.append((_name, kwargs.get("amp")))
            return _original(self, *args, **kwargs)
        monkeypatch.setattr(PackNet, name, spy)
    result = run_packnet(_tiny_model(), _tiny_tasks(), epochs=1, retrain_epochs=1, batch_size=16, progress=False,
                         amp=True)  # bfloat16 autocast on the CPU
    assert seen == [("train_task", True), ("retrain", True)] * 2
    assert result.forgetting == [0.0, 0.0]


def _bn_model(n: int = 2) -> torch.nn.Module:
    from packnet import TaskHeads

    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.BatchNorm1d(16), torch.nn.ReLU(),
                               TaskHeads(16, 2, task_ids=range(n)))


@pytest.mark.parametrize("policy, recalibrated", [("first_task", [0]), ("per_task", [0, 1])])
def test_run_packnet_recalibrates_batchnorm_where_the_statistics_are_the_tasks_own(policy, recalibrated,
                                                                                  monkeypatch):
    from packnet import PackNet
    from packnet.bench.experiment import run_packnet

    calls = []
    original = PackNet.recalibrate_batchnorm

    def spy(self, task_id, loader, **kwargs):
        calls.append((task_id, self.stage))
        return original(self, task_id, loader, **kwargs)
    monkeypatch.setattr(PackNet, "recalibrate_batchnorm", spy)
    tasks = _tiny_tasks()
    common = dict(epochs=1, retrain_epochs=1, batch_size=16, progress=False, shared_policy=policy)
    result = run_packnet(_bn_model(), tasks, recalibrate_batchnorm=True, **common)
    assert [t for t, _ in calls] == [tasks[i].task_id for i in recalibrated]
    assert result.forgetting == [0.0, 0.0]
    norm = result.model[1]
    plain = run_packnet(_bn_model(), tasks, **common).model[1]  # same data and seeds, no recalibration
    assert torch.equal(norm.weight, plain.weight)  # recalibration changes statistics, never parameters
    assert not torch.equal(norm.running_mean, plain.running_mean)


def test_run_packnet_with_task_inference_reports_every_method_memory_and_time():
    from packnet.bench.experiment import run_packnet
    from packnet.task_inference import METHODS

    tasks = _tiny_tasks()
    result = run_packnet(_tiny_model(), tasks, epochs=1, retrain_epochs=0, batch_size=16, progress=False,
                         task_inference=True, task_inference_options={"n_components": 3})
    figures = json.loads(json.dumps(result.to_dict(), allow_nan=False))["task_inference"]
    assert figures["method"] == METHODS[0] and set(figures["by_method"]) == set(METHODS)
    for f in figures["by_method"].values():
        for key in ("per_sample_task_accuracy", "task_agnostic_accuracy", "batch_task_accuracy"):
            assert 0.0 <= f[key] <= 1.0
        assert f["task_agnostic_accuracy"] <= f["per_sample_task_accuracy"]
        assert f["seconds_per_sample"] > 0 and f["seconds_per_batch"] > 0 and f["samples"] == 32
    assert figures["memory_bytes"] == sum(figures["memory_bytes_per_task"]) > 0
    assert len(figures["calibration_seconds"]) == len(tasks)
    assert result.packnet.task_inference.tasks == [0, 1]
    assert "task_inference" not in run_packnet(_tiny_model(), tasks, epochs=0, retrain_epochs=0,
                                               progress=False).to_dict()


def test_cli_task_inference_prints_the_methods_and_reports_them_in_json(capsys):
    args = ["--tasks", "2", "--epochs", "1", "--retrain-epochs", "0", "--task-inference"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "Inference without the task id" in out and "input_density" in out and "confidence" in out
    assert main(args + ["--json"]) == 0
    figures = json.loads(capsys.readouterr().out)["task_inference"]
    assert figures["per_sample_task_accuracy"] >= 0.9 and figures["batch_task_accuracy"] >= 0.99
