"""The serving room: adapter registry, compatibility check, the front door, and vLLM with runtime LoRA loading."""
