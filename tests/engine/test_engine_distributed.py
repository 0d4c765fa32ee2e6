"""torch.distributed helpers: single-process fallbacks and a real 2-process gloo group."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.multiprocessing as mp
from torch import Tensor, nn

from engine import distributed as dist
from engine.checkpoint import Checkpointer
from engine.errors import UserError
from engine.launch import free_port
from engine.loop import LoopOptions, train_loop
from engine.seeding import seed_everything
from engine.solver import WarmupMultiStepLR


def test_single_process_fallbacks() -> None:
    assert (dist.get_rank(), dist.get_world_size(), dist.is_main()) == (0, 1, True)
    assert dist.all_gather_object({"a": 1}) == [{"a": 1}]
    assert dist.reduce_scalars({"x": torch.tensor(2.5), "y": 1}) == {"x": 2.5, "y": 1.0}
    dist.barrier()
    model = nn.Linear(2, 2)
    assert dist.wrap_ddp(model, torch.device("cpu")) is model
    assert dist.unwrap(model) is model
    assert dist.resolve_device("cpu") == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a CPU-only machine")
def test_cuda_without_cuda_is_a_user_error() -> None:
    with pytest.raises(UserError, match="'cuda' was asked for but CUDA is not available"):
        dist.resolve_device("cuda")


def _worker(rank: int, world: int, port: int, out_dir: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
    )
    torch.set_num_threads(1)
    device = dist.resolve_device("cpu")
    dist.init_distributed(device)
    result: dict[str, Any] = {
        "reduced": dist.reduce_scalars({"a": float(rank), "num_b": 1.0}),
        "gathered": dist.all_gather_object(rank * 10),
    }
    # checkpoint: every rank's RNG state is saved (by rank 0) and each rank gets its own back
    seed_everything(0, rank)
    model = dist.wrap_ddp(nn.Linear(3, 1), device)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = WarmupMultiStepLR(opt, steps=[])
    ckpt = Checkpointer(Path(out_dir) / "ckpt", model, opt, sched)
    ckpt.save(1)
    expected = torch.rand(2).tolist()
    ckpt.resume()
    result["rng_equal"] = torch.rand(2).tolist() == expected

    # a NaN on rank 1 only: every rank must skip the batch, or DDP would hang / drift apart
    def step(model: nn.Module, batch: int) -> dict[str, Tensor]:
        loss = model(torch.full((2, 3), float(rank + batch))).pow(2).mean()
        return {"loss": loss * float("nan") if (rank, batch) == (1, 2) else loss}

    out = train_loop(model, opt, sched, iter([1, 2, 3]), step, LoopOptions(3, on_nonfinite="skip"))
    result["skipped"] = out["num_skipped_batches"]
    result["weight"] = [p.detach().flatten().tolist() for p in model.parameters()]
    (Path(out_dir) / f"rank{rank}.json").write_text(json.dumps(result))
    dist.cleanup()


def test_two_process_gloo_group(tmp_path: Path) -> None:
    mp.start_processes(_worker, args=(2, free_port(), str(tmp_path)), nprocs=2, start_method="fork")
    results = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    for res in results:
        assert res["reduced"] == {"a": 0.5, "num_b": 1.0}  # plain means over ranks
        assert res["gathered"] == [0, 10]
        assert res["rng_equal"] is True
        assert res["skipped"] == 1
    assert results[0]["weight"] == results[1]["weight"]
