"""The typed config of the training data (``data.*`` in a recipe). Field docstrings are the --help text."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class DataConfig(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True, extra="forbid")

    path: Path | None = None
    """Local training data: a .jsonl file (one conversation per line) or a .json file holding a list of them.
    Every row is checked before training starts. In a recipe, relative to the recipe's folder; as a KEY=VALUE
    override, relative to the current directory."""
    dataset: str | None = None
    """Instead of path: a Hugging Face dataset id (e.g. HuggingFaceH4/no_robots), or a datasets builder such as
    json or parquet together with data_files."""
    data_files: list[str] = []
    """Files (or globs) for a builder --dataset such as json or parquet (load_dataset's data_files)."""
    subset: str | None = None
    """Dataset configuration name (load_dataset's name=), for datasets that have several."""
    split: str = "train"
    """Dataset split to train on (e.g. train, or train[:10%])."""
    revision: str | None = None
    """Dataset git revision (branch, tag or commit). Unset: the default branch."""
    streaming: bool = False
    """Read the dataset lazily as training goes, for datasets too large to prepare first. Hub rows are then
    checked only when they are reached, and training needs training.max_steps."""
    format: Literal["auto", "messages", "sharegpt", "alpaca"] = "auto"
    """Row format: messages (OpenAI {"messages", "tools"?}), sharegpt ({"conversations": [{"from", "value"}]}),
    alpaca ({"instruction", "input"?, "output"}). auto: from the first row's keys."""
    max_length: int = Field(1024, ge=16)
    """Longest training example in tokens; longer ones are cut on the right (examples left with no assistant
    token are dropped and counted)."""
    chat_template: Path | None = None
    """A Jinja chat template file to render the data with; use the one the adapter will be served with. Unset: the
    model's own, except for the embedded default, which gets lorastack's tool-aware ChatML template. Relative paths
    as for data.path."""
    eval_fraction: float = Field(0.05, ge=0, lt=1)
    """Share of rows held out for evaluation (0 = no eval split). Chosen by a seeded hash of each row's content,
    so the split is the same on every run and a duplicated row never lands on both sides. Ignored (0) when
    data.eval_path is set."""
    eval_path: Path | None = None
    """A separate eval set: a .jsonl or .json file in the same format as data.path, checked row by row like it.
    Set: the eval split is this file and the training data is not split. Relative paths as for data.path."""
    packing: bool = True
    """Padding-free batching: a batch's examples go back to back (one flat row with flash attention; with sdpa,
    rows no longer than its longest example), and attention does not cross them. Unsloth and eager attention
    get padded batches."""
    group_by_length: bool = False
    """Batch examples of similar length together (transformers' length-grouped sampler: shuffled groups of 50
    batches, sorted by length inside each), so batches carry little padding; the data order is then less random.
    Not for streamed data (it has no length to sort by)."""
    system_prompt: str | None = None
    """System message added to rows that have none. Unset: rows stay as they are (the chat template may add its
    own default)."""

    @model_validator(mode="after")
    def _one_source(self) -> DataConfig:
        if (self.path is None) == (self.dataset is None):
            raise ValueError("set exactly one of data.path (a local file) or data.dataset (a Hugging Face dataset)")
        if self.group_by_length and self.streaming:
            raise ValueError("data.group_by_length needs every example's length first, and streamed data has none: "
                             "turn one of them off")
        if self.data_files and self.dataset is None:
            raise ValueError("data.data_files goes with data.dataset (e.g. dataset: json); for one file use data.path")
        if self.path is not None and self.path.suffix not in (".jsonl", ".json"):
            raise ValueError(
                f"data.path ({self.path}) must be a .jsonl or .json file; for parquet or csv use data.dataset "
                "(parquet or csv) with data.data_files"
            )
        if self.eval_path is not None:
            if self.eval_path.suffix not in (".jsonl", ".json"):
                raise ValueError(f"data.eval_path ({self.eval_path}) must be a .jsonl or .json file")
            self.eval_fraction = 0.0  # the eval split is that file: the training data is not split
        return self

    @property
    def source_name(self) -> str:
        """How errors and reports name the data: the file, or dataset[split]."""
        if self.path is not None:
            return str(self.path)
        subset = f"/{self.subset}" if self.subset else ""
        return f"{self.dataset}{subset}[{self.split}]"
