"""LoRA facts that training and serving share."""

from __future__ import annotations

VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
"""The ranks vLLM accepts for ``--max-lora-rank`` (vllm.config.lora.MaxLoRARanks)."""
MAX_LORA_RANK = VLLM_LORA_RANKS[-1]
"""The largest LoRA rank vLLM serves: training refuses more, the compatibility check too."""
