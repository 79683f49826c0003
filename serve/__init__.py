"""The serving room: adapter registry, compatibility gate, and vLLM with runtime LoRA loading."""
