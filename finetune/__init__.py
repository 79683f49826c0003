"""The fine-tuning room: data -> QLoRA/LoRA training -> adapter + card."""
