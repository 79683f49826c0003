"""Synthetic tool-use data for teaching a small model the agent's calculator and search tools.

    from lorastack.finetune.synth import generate
    report = generate(Path("data/tools"), n_train=2000, n_eval=200, seed=0)

Modules: generate (SynthConfig, generate, files), arithmetic (calculator word problems), facts (the invented
world behind the search corpora), chat (questions answered without a tool); for ``variety: broad``: multistep
(two- and three-step problems with a plan), documents (several facts of each question type per document), and
functions (a client's own invented functions, ``function_share``).
"""

from lorastack.finetune.synth.generate import SynthConfig, SynthReport, generate, tool_schemas

__all__ = ["SynthConfig", "SynthReport", "generate", "tool_schemas"]
