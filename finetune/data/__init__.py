"""Training data for ``lorastack train``: rows -> checked conversations -> tokens with assistant-only labels
-> batches.

The trainer's calls, in order::

    stats = validate(config.data)                     # every row checked; nothing loaded or written yet
    train, eval, report = load_examples(config.data, tokenizer, template_text, seed=seed)
    collator, why = make_collator(config.data, tokenizer, model.config._attn_implementation)
    data_fingerprint(config.data), template_fingerprint(template_text)   # for the adapter card

Modules: config (DataConfig), formats (row formats -> conversations), sources (files and hub datasets,
eval split, fingerprints), tokenize (chat template and loss mask), examples (datasets for Trainer),
collate (padded and padding-free batches).
"""

from lorastack.finetune.data.collate import NUM_TOKENS, PackedRowsCollator, PaddedCollator, count_tokens, make_collator
from lorastack.finetune.data.config import DataConfig
from lorastack.finetune.data.errors import DataError
from lorastack.finetune.data.examples import DataReport, load_examples
from lorastack.finetune.data.formats import SHAREGPT_ROLES, Conversation, detect_format, to_conversation
from lorastack.finetune.data.sources import DataStats, conversations, data_fingerprint, in_eval, template_fingerprint, validate
from lorastack.finetune.data.tokenize import IGNORE, ChatEncoder, Encoded, template_text

__all__ = [
    "IGNORE",
    "NUM_TOKENS",
    "SHAREGPT_ROLES",
    "ChatEncoder",
    "Conversation",
    "DataConfig",
    "DataError",
    "DataReport",
    "DataStats",
    "Encoded",
    "PackedRowsCollator",
    "PaddedCollator",
    "conversations",
    "count_tokens",
    "data_fingerprint",
    "detect_format",
    "in_eval",
    "load_examples",
    "make_collator",
    "template_fingerprint",
    "template_text",
    "to_conversation",
    "validate",
]
