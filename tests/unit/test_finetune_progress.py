"""What a training run shows while and after it runs: progress without a terminal, summaries, Ctrl-C, the curve."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import pytest
import torch
from rich.console import Console
from typer.testing import CliRunner

from lorastack.cli import app
from lorastack.finetune.measure import TokenCounter, describe_metrics, loss_figure
from lorastack.finetune.progress import LineProgress, RichProgress, duration, progress_for, progress_line


def test_progress_line_reads_like_a_log_line() -> None:
    logs = {"loss": 1.2341, "grad_norm": 0.5, "learning_rate": 1.9e-4, "tokens_per_second": 412.3, "epoch": 0.1}
    assert progress_line(20, 200, logs, 192) == "step 20/200  loss 1.2341  lr 1.9e-04  412 tok/s  ETA 3m12s"
    assert progress_line(200, 200, {"eval_loss": 0.9}, 0) == "step 200/200  eval loss 0.9000"
    grpo = {"loss": 0.0123, "reward": 0.375, "reward_std": 0.5, "learning_rate": 2e-5}
    assert progress_line(3, 300, grpo, None) == "step 3/300  loss 0.0123  reward 0.375  lr 2.0e-05"
    assert progress_line(200, 200, {"train_runtime": 12.0, "train_loss": 1.0}, None) is None  # the final summary
    assert (duration(42), duration(3725)) == ("42s", "1h02m")


def test_without_a_terminal_progress_is_plain_lines() -> None:
    """Piped to a file, the rich bar drew nothing for minutes: a pipe gets a line per logging step instead."""
    piped = Console(file=io.StringIO(), force_terminal=False)
    assert isinstance(progress_for(piped), LineProgress)
    assert isinstance(progress_for(Console(file=io.StringIO(), force_terminal=True)), RichProgress)


class _Tiny(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(4))

    def forward(self, input_ids, labels):
        return {"loss": ((input_ids * self.weight).sum(-1) - labels).pow(2).mean()}


def test_the_trainer_prints_no_raw_dicts(tmp_path: Path, capsys, caplog) -> None:
    """transformers' PrinterCallback (added with disable_tqdm) printed every log as a raw dict on stdout."""
    from transformers import TrainingArguments

    from lorastack.finetune.hf_trainer import trainer_class

    rows = [{"input_ids": torch.randn(4), "labels": torch.tensor(1.0)} for _ in range(8)]
    args = TrainingArguments(output_dir=str(tmp_path), max_steps=4, per_device_train_batch_size=2, logging_steps=2,
                             disable_tqdm=True, use_cpu=True, report_to="none", save_strategy="no")  # fmt: skip
    trainer = trainer_class(TokenCounter(), chunked_loss=False)(
        model=_Tiny(), args=args, train_dataset=rows, callbacks=[LineProgress()]
    )
    with caplog.at_level(logging.INFO, logger="lorastack"):
        trainer.train()
    out = capsys.readouterr()
    assert "{'" not in out.out + out.err
    lines = [r.getMessage() for r in caplog.records if r.name == "lorastack.finetune.progress"]
    assert [line.split("  ")[0] for line in lines] == ["step 2/4", "step 4/4"]
    assert "ETA" in lines[0] and "tok/s" in lines[0] and "lr " in lines[0]


def test_a_short_run_says_why_steady_tokens_per_second_is_missing() -> None:
    """The summary printed `steady_tokens_per_second None` for runs of 4 steps or fewer."""
    counter = TokenCounter()
    counter.marks = [(float(i), 100 * i) for i in range(4)]
    assert counter.steady_tokens_per_second() is None
    line = describe_metrics({"train_loss": 1.0, "steps": 4})
    assert "None" not in line and "steady_tokens_per_second n/a (needs more than 4 steps" in line
    assert describe_metrics({"steady_tokens_per_second": 210.5}) == "steady_tokens_per_second 210.5"


def _recipe(folder: Path, data: Path) -> Path:
    recipe = folder / "recipe.yaml"
    recipe.write_text(f"data:\n  path: {data}\noutput_dir: {folder / 'run'}\ntraining:\n  max_steps: 4\n")
    return recipe


@pytest.mark.parametrize("saved", [True, False], ids=["checkpoint", "none-yet"])
def test_ctrl_c_says_how_to_resume_and_exits_130(tmp_path: Path, one_chat: Path, monkeypatch, saved: bool) -> None:
    """Ctrl-C ended the run with a traceback and no word about --resume."""
    import lorastack.finetune.trainer

    recipe = _recipe(tmp_path, one_chat)
    if saved:
        checkpoint = tmp_path / "run" / "checkpoints" / "checkpoint-2"
        checkpoint.mkdir(parents=True)
        (checkpoint / "trainer_state.json").write_text("{}")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(lorastack.finetune.trainer, "train", interrupted)
    result = CliRunner().invoke(app, ["train", str(recipe), "training.max_steps=9"])
    assert result.exit_code == 130, result.output
    assert "Traceback" not in result.output and result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.output.strip().splitlines()
    if saved:
        assert lines[-1] == f"Interrupted; checkpoint-2 is saved. Continue with: lorastack train {recipe} " \
                            "training.max_steps=9 --resume"  # fmt: skip
    else:
        assert lines[-1].endswith(f"start again with: lorastack train {recipe} training.max_steps=9")


def test_a_one_point_loss_curve_is_visible() -> None:
    """A run with one logged step drew a line of one point: nothing."""
    fig = loss_figure([{"step": 1, "loss": 2.0}])
    (line,) = fig.axes[0].lines
    assert line.get_marker() not in (None, "None", "", " ")


def test_a_grpo_run_draws_its_mean_reward_beside_the_loss() -> None:
    history = [{"step": s, "loss": 0.0, "reward": r} for s, r in ((1, 0.25), (2, 0.5), (3, 1.0))]
    fig = loss_figure(history)
    loss_axis, reward_axis = fig.axes
    assert reward_axis.get_ylabel() == "mean reward"
    assert list(reward_axis.lines[0].get_ydata()) == [0.25, 0.5, 1.0]
    assert len(loss_figure([{"step": 1, "loss": 2.0}]).axes) == 1  # a supervised run: the loss alone
