"""One rank of the distributed test (tests/test_distributed.py launches two with torchrun, gloo on the CPU).

Usage: python -m torch.distributed.run --nproc_per_node=2 tests/distributed_worker.py OUT_DIR {ddp-first,packnet-first}
"""

from __future__ import annotations

import sys
from pathlib import Path


def main(out: Path, order: str) -> None:
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    sys.path.insert(0, str(Path(__file__).parent))
    from helpers import batches, conv_bn_net

    from packnet import PackNet

    dist.init_process_group("gloo")
    rank = dist.get_rank()
    torch.manual_seed(0)
    net = conv_bn_net()
    ddp = DistributedDataParallel(net, find_unused_parameters=True)
    # ddp-first: the recommended order. packnet-first: PackNet never sees the DDP wrapper, so training forwards
    # bypass gradient averaging and the replicas drift apart.
    pn = PackNet(ddp if order == "ddp-first" else net, prune_ratio=0.5)
    x = torch.randn(6, 1, 8, 8, generator=torch.Generator().manual_seed(123))
    right_after, log = {}, []
    try:
        for t in range(3):
            shard = batches(100 * t + rank)  # each rank trains on different data, as with a DistributedSampler
            pn.train_task(t, shard, 2, optimizer=lambda ps: torch.optim.AdamW(ps, lr=1e-2, weight_decay=0.1),
                          progress=False)
            pn.verify_consistent(); log.append(f"train {t}")
            pn.prune(t)
            pn.verify_consistent(); log.append(f"prune {t}")
            pn.retrain(t, shard, 1, progress=False)
            pn.verify_consistent(); log.append(f"retrain {t}")
            pn.freeze(t)
            pn.verify_consistent(); log.append(f"freeze {t}")
            with pn.task(t):
                right_after[t] = net(x).detach().clone()
    except RuntimeError as err:
        (out / f"error{rank}.txt").write_text(str(err))
        dist.destroy_process_group()
        return
    final = {}
    for t in range(3):
        with pn.task(t):
            final[t] = net(x).detach().clone()
    pn.save(out / "checkpoint.pt")
    torch.save({"right_after": right_after, "final": final, "log": log, "x": x}, out / f"rank{rank}.pt")
    dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2])
