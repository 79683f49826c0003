"""One process of a distributed training run for test_distributed_training.py, started by torchrun:
``python -m torch.distributed.run --nproc-per-node 2 tests/integration/distributed_worker.py OUT KEY=VALUE...``.

Trains with lorastack's real trainer (the run folder is OUT/run), then every process writes what it ended with:
OUT/rank{R}.safetensors (its LoRA weights) and OUT/rank{R}.json (its log history and metrics)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from safetensors.torch import save_file

from lorastack.finetune.config import load_train_config
from lorastack.finetune.distributed import World
from lorastack.finetune.trainer import train


def main() -> None:
    out, overrides = Path(sys.argv[1]), sys.argv[2:]
    result = train(load_train_config(None, [*overrides, f"output_dir={out / 'run'}"]))
    rank = World.this().rank
    model = result.model.module if hasattr(result.model, "module") else result.model
    weights = {name: p.detach().cpu().contiguous() for name, p in model.named_parameters() if "lora_" in name}
    save_file(weights, out / f"rank{rank}.safetensors")
    (out / f"rank{rank}.json").write_text(json.dumps({"log_history": result.log_history, "metrics": result.metrics}))


if __name__ == "__main__":
    main()
