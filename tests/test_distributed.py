"""PackNet under DistributedDataParallel: two CPU processes (gloo), launched with torchrun as users launch it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from helpers import conv_bn_net
from packnet import PackNet

WORKER = Path(__file__).with_name("distributed_worker.py")
ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                                reason="needs torch.distributed with the gloo backend")


def torchrun(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                           "--standalone", *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                          env=env)


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    proc = torchrun(str(WORKER), str(out), "ddp-first")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def test_every_phase_leaves_owner_maps_and_weights_identical_across_ranks(ddp_run):
    for r in (0, 1):
        log = torch.load(ddp_run / f"rank{r}.pt", weights_only=True)["log"]
        assert log == [f"{phase} {t}" for t in range(3) for phase in ("train", "prune", "retrain", "freeze")]


def test_zero_forgetting_bit_exact_on_every_rank(ddp_run):
    results = [torch.load(ddp_run / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    for res in results:
        for t in range(3):
            assert torch.equal(res["final"][t], res["right_after"][t])
    for t in range(3):
        assert torch.equal(results[0]["final"][t], results[1]["final"][t])


def test_rank0_checkpoint_loads_into_a_single_process_packnet(ddp_run):
    rank0 = torch.load(ddp_run / "rank0.pt", weights_only=True)
    pn = PackNet(conv_bn_net(), prune_ratio=0.5)
    pn.load_state_dict(torch.load(ddp_run / "checkpoint.pt", weights_only=True))
    assert pn.tasks == [0, 1, 2]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the workers ran: a different thread count may change the last bits of a conv
    try:
        for t in range(3):
            with pn.task(t):
                assert torch.equal(pn.model(rank0["x"]), rank0["final"][t])
    finally:
        torch.set_num_threads(threads)


def test_the_wrong_wrapping_order_is_caught_before_ranks_disagree(tmp_path):
    proc = torchrun(str(WORKER), str(tmp_path), "packnet-first")
    assert proc.returncode == 0, proc.stderr[-3000:]
    for r in (0, 1):
        message = (tmp_path / f"error{r}.txt").read_text()
        assert "differ across ranks" in message and "DistributedDataParallel *before* PackNet" in message
    assert not (tmp_path / "checkpoint.pt").exists()


def test_command_line_under_torchrun_matches_the_single_process_kind_of_result():
    proc = torchrun("-m", "packnet", "--json", "--tasks", "3", "--epochs", "3", "--retrain-epochs", "1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 1  # rank 0 prints, rank 1 stays quiet
    result = json.loads(lines[0])
    assert result["world_size"] == 2
    assert result["forgetting"] == [0.0, 0.0, 0.0]
    assert result["average_accuracy"] >= 0.95
