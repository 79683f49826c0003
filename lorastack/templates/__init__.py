"""Chat templates shipped with lorastack."""

from pathlib import Path

TOOLS_TEMPLATE = Path(__file__).with_name("chatml_tools.jinja")
"""ChatML with Hermes-style tool calls: served with vLLM's hermes parser and used to render training data."""
