"""Synthetic tool-use data for teaching a small model the agent's calculator and search tools.

    from lorastack.finetune.synth import generate
    report = generate(Path("data/tools"), n_train=2000, n_eval=200, seed=0)

Modules: generate (SynthConfig, generate, files), arithmetic (calculator word problems), facts (the invented
world behind the search corpora), chat (questions answered without a tool).
"""

from lorastack.finetune.synth.generate import SynthConfig, SynthReport, generate, tool_schemas

__all__ = ["SynthConfig", "SynthReport", "generate", "tool_schemas"]
