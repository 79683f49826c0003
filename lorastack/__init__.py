"""lorastack: fine-tune, serve and use LoRA adapters on one base model."""

__version__ = "0.1.0"
