"""One training run: data -> model -> transformers' Trainer -> adapter folder with its card.

Run folder layout (``output_dir``)::

    checkpoints/checkpoint-N/   what --resume continues from
    adapter/                    the PEFT adapter, card.json, README.md (what you register and serve)
    loss_curve.png
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import logging
import os
import resource
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from lorastack.finetune.backends import load_model
from lorastack.finetune.card import write_card
from lorastack.finetune.choices import RunChoices, resolve
from lorastack.finetune.config import TrainConfig
from lorastack.finetune.data import data_fingerprint, load_examples, make_collator, template_fingerprint, validate
from lorastack.finetune.distributed import World, decoder_layer_classes, fsdp_arguments, global_batch
from lorastack.finetune.distributed import total_over_ranks, with_strategy
from lorastack.finetune.grpo import grpo_arguments, grpo_dataset, import_trl, tool_decision, use_torch_log_probs
from lorastack.finetune.hf_trainer import trainer_class
from lorastack.finetune.measure import PeakMemory, TokenCounter, plot_loss_curve
from lorastack.finetune.memory import GIB
from lorastack.finetune.memory_check import check_memory_fits, host_memory_bytes
from lorastack.finetune.profile import profiler_from_env
from lorastack.errors import LorastackError
from lorastack.serve.compatibility import check_compatible, inspect_adapter
from lorastack.models import BaseModel, resolve_base_model

logger = logging.getLogger(__name__)


@dataclass
class TrainResult:
    adapter_dir: Path
    base: BaseModel
    choices: RunChoices
    metrics: dict[str, Any]
    log_history: list[dict]
    model: Any = None
    """The trained PEFT model, still in memory (for callers that go on using it)."""


def chat_template_for(config: TrainConfig, base: BaseModel) -> str | None:
    """The template training renders with: the one the server will use for this base model."""
    if config.data.chat_template is not None:
        return config.data.chat_template.read_text()
    if base.chat_template is not None:
        return base.chat_template.read_text()
    return None  # the tokenizer's own


def _existing_checkpoint(folder: Path) -> str | None:
    """The newest complete checkpoint in ``folder`` (its trainer_state.json, written last, is there), else the
    newest one: a run killed while writing a checkpoint resumes from the one before."""
    from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

    if not folder.is_dir():
        return None
    steps = {int(p.name.rsplit("-", 1)[1]): p for p in folder.glob(f"{PREFIX_CHECKPOINT_DIR}-*")
             if p.is_dir() and p.name.rsplit("-", 1)[1].isdigit()}  # fmt: skip
    newest = sorted(steps, reverse=True)
    complete = [step for step in newest if (steps[step] / "trainer_state.json").is_file()]
    chosen = complete[:1] or newest[:1]
    return str(steps[chosen[0]]) if chosen else None


def check_run_folder(output_dir: Path, resume: bool) -> str | None:
    """Refuse a run that would overwrite an earlier one, or a --resume with nothing to resume; the checkpoint
    to resume from (None for a new run)."""
    last = last_checkpoint(output_dir)
    if resume and last is None:
        raise LorastackError(
            f"--resume: no checkpoint in {output_dir / 'checkpoints'}.", "Start the run without --resume."
        )
    if not resume and last is not None:
        raise LorastackError(
            f"{output_dir} already holds checkpoints of an earlier run ({Path(last).name}).",
            "Continue it with --resume, or set output_dir to a new folder.",
        )
    return last


def last_checkpoint(output_dir: Path) -> str | None:
    """The checkpoint ``--resume`` would continue from in run folder ``output_dir`` (None if there is none)."""
    return _existing_checkpoint(output_dir / "checkpoints")


def _sampling(group_by_length: bool) -> dict[str, Any]:
    """The train sampler argument: train_sampling_strategy in recent transformers, group_by_length before it."""
    from transformers import TrainingArguments

    if "train_sampling_strategy" in {field.name for field in dataclasses.fields(TrainingArguments)}:
        return {"train_sampling_strategy": "group_by_length" if group_by_length else "random"}
    return {"group_by_length": group_by_length}


def _training_arguments(config: TrainConfig, choices: RunChoices, has_eval: bool, model: Any = None) -> Any:
    """The Trainer's arguments for ``config`` run as ``choices`` (``model``: what FSDP wraps, layer by layer)."""
    from transformers import TrainingArguments

    return TrainingArguments(**_training_settings(config, choices, has_eval, model))


def _training_settings(config: TrainConfig, choices: RunChoices, has_eval: bool, model: Any) -> dict[str, Any]:
    t = config.training
    eval_every = t.eval_steps if t.eval_steps > 0 else None
    spread: dict[str, Any] = {}
    if choices.distributed == "ddp":
        spread = {"ddp_find_unused_parameters": False}  # every LoRA weight takes part in every step
    elif choices.distributed == "fsdp":
        spread = fsdp_arguments(decoder_layer_classes(model))
    return dict(
        output_dir=str(config.output_dir / "checkpoints"),
        num_train_epochs=t.epochs,
        max_steps=t.max_steps,
        per_device_train_batch_size=t.batch_size,
        per_device_eval_batch_size=t.batch_size,
        gradient_accumulation_steps=t.grad_accum,
        learning_rate=t.learning_rate,
        lr_scheduler_type=t.lr_scheduler,
        warmup_steps=t.warmup_ratio,  # a float below 1 is a ratio of the total steps
        weight_decay=t.weight_decay,
        max_grad_norm=t.max_grad_norm,
        optim=choices.optimizer,
        bf16=choices.compute_dtype == "bfloat16" and choices.on_gpu,
        fp16=choices.compute_dtype == "float16" and choices.on_gpu,
        use_cpu=not choices.on_gpu,
        # The backends set up checkpointing themselves (Unsloth its own offloaded variant).
        gradient_checkpointing=False,
        logging_steps=t.logging_steps,
        eval_strategy=("steps" if eval_every else "no") if has_eval else "no",
        eval_steps=eval_every,
        save_strategy="steps",
        save_steps=t.save_steps,
        save_total_limit=t.save_total_limit,
        seed=t.seed,
        report_to=list(t.report_to) or "none",
        remove_unused_columns=False,
        **_sampling(config.data.group_by_length),
        dataloader_num_workers=0,
        disable_tqdm=True,
        # Off: the filter checks every step's loss for NaN on the host, a wait for the GPU each step, and it
        # hides a diverged run by logging the running mean instead of the NaN.
        logging_nan_inf_filter=False,
        **spread,
    )


@contextmanager
def _run_folder_held(output_dir: Path) -> Iterator[None]:
    """The run folder, for this run alone while it trains (an advisory lock on the folder itself, which the kernel
    drops when the process ends, kill -9 included): a second run into the same folder, or a --resume while the
    first still trains, is refused instead of writing checkpoints beside it."""
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        folder = os.open(output_dir, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:  # a file, under a file, or a folder this user may not create or open
        why = "it is a file" if output_dir.is_file() else exc.strerror or str(exc)
        raise LorastackError(
            f"output_dir {output_dir} cannot be a run folder ({why}).",
            "Set output_dir to a folder this user can write, e.g. runs/NAME.",
        ) from None
    try:
        try:
            fcntl.flock(folder, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LorastackError(
                f"{output_dir} is in use: another training run is writing to it.",
                "Wait for that run to end (or stop it), or set output_dir to a new folder.",
            ) from None
        except OSError as exc:  # a file system without locks (some network and FUSE mounts): train unguarded
            logger.warning("%s cannot be locked (%s): a second run into it would not be refused", output_dir, exc)
        yield
    finally:
        os.close(folder)


def train(config: TrainConfig, resume: bool = False, callbacks: Sequence[Any] = ()) -> TrainResult:
    """Run ``config``. With ``resume``, continue from the run folder's last checkpoint.

    Progress goes to this module's logger (INFO: the choices, data, batching); ``callbacks`` are further
    ``transformers.TrainerCallback`` instances, such as the CLI's progress bar.
    """
    with ExitStack() as held:
        return _train(config, resume, callbacks, held)


def _train(config: TrainConfig, resume: bool, callbacks: Sequence[Any], held: ExitStack) -> TrainResult:
    out = config.output_dir
    last = check_run_folder(out, resume)
    config.lora.check_init_from()
    profilers = profiler_from_env()  # a bad LORASTACK_PROFILE_STEPS stops the run before anything loads
    world = World.this()
    import torch
    from transformers import set_seed

    if torch.cuda.is_available():
        # Before anything touches CUDA: each process's context, weights and checks on its own GPU, not GPU 0.
        torch.cuda.set_device(world.local_rank)
    choices = resolve(config, processes=world.size)
    stats = validate(config.data)  # every row checked before anything is loaded or written
    base = resolve_base_model(config.base_model)
    if config.lora.init_from is not None:  # a start adapter of another base or shape: one line, before the model loads
        check_compatible(inspect_adapter(config.lora.init_from), base, base.weight_shapes())
    gpu_gib = torch.cuda.get_device_properties(world.local_rank).total_memory / 2**30 if choices.on_gpu else None
    choices = with_strategy(config, choices, base.path, gpu_gib)
    logger.info("%s", choices.describe())
    logger.info("%s", global_batch(config.training.batch_size, config.training.grad_accum, world.size)[1])
    template = chat_template_for(config, base)
    # Seeded before the LoRA weights are made (the Trainer seeds only after): the same seed, the same start, run
    # after run and whatever the number of processes.
    set_seed(config.training.seed)
    if world.main:  # the folder is this run's from here on (nothing is written into it before)
        held.enter_context(_run_folder_held(out))
        last = check_run_folder(out, resume)  # again, held: a run that ended meanwhile may have left a newer one
    model, tokenizer = load_model(config, choices, base.path, config.data.max_length)
    counter = TokenCounter()  # fed by the supervised trainer's steps
    if config.method == "grpo":
        trainer, eval_set = _grpo_trainer(config, choices, model, tokenizer, template, [*profilers, *callbacks])
    else:
        capacity = int(gpu_gib * GIB) if gpu_gib is not None else host_memory_bytes()
        fits = partial(check_memory_fits, config, choices, base.path, capacity=capacity)
        trainer, eval_set = _sft_trainer(config, choices, model, tokenizer, template, counter, fits,
                                         [*profilers, *callbacks])  # fmt: skip
    if resume:
        logger.info("Resuming from %s.", Path(last).name)
    started = time.perf_counter()
    try:
        output = trainer.train(resume_from_checkpoint=last if resume else None)
    except torch.OutOfMemoryError as exc:  # a batch longer than the check planned for, or memory others took
        where = f"GPU {world.local_rank}" if choices.on_gpu else "memory"
        detail = (str(exc).strip() or "no detail").splitlines()[0]
        raise LorastackError(
            f"Out of {where} at step {trainer.state.global_step + 1}: {detail}",
            "Lower training.batch_size (raise training.grad_accum to keep the global batch), set "
            "training.gradient_checkpointing=on or lower data.max_length; `lorastack plan` shows what fits.",
        ) from None
    seconds = time.perf_counter() - started
    device = trainer.args.device
    metrics: dict[str, Any] = {
        "train_loss": round(output.training_loss, 4),
        "steps": trainer.state.global_step,
        "train_seconds": round(seconds, 1),
    }
    if config.method == "grpo":  # its tokens are sampled, not read from the data: the rewards tell instead
        metrics |= _rewards(trainer)
    else:
        metrics |= _token_metrics(counter, seconds, device)
    metrics = {name: value for name, value in metrics.items() if value is not None}  # too short a run to tell
    if world.distributed:
        metrics["processes"], metrics["distributed"] = world.size, choices.distributed
        training = config.training
        metrics["global_batch_size"] = global_batch(training.batch_size, training.grad_accum, world.size)[0]
    if eval_set is not None:
        metrics["eval_loss"] = round(_final_eval_loss(trainer), 4)
    metrics.update(_peak_memory(choices, device))

    adapter_dir = out / "adapter"
    if choices.distributed == "fsdp":
        trainer.save_model(str(adapter_dir))  # gathers the sharded adapter (every process), rank 0 writes it
        (adapter_dir / "training_args.bin").unlink(missing_ok=True)  # a pickle; the registry takes none
    elif world.main:
        extra = len(getattr(model, "peft_config", {})) > 1  # GRPO's reference copy (beta > 0) is not this run's
        model.save_pretrained(adapter_dir, **({"selected_adapters": ["default"]} if extra else {}))
    if not world.main:  # rank 0 alone writes the adapter, its card and the curve
        return TrainResult(adapter_dir, base, choices, metrics, trainer.state.log_history, model)
    _cast_adapter(adapter_dir, config.lora.save_dtype)
    _portable_base_name(adapter_dir, base)
    curve = plot_loss_curve(trainer.state.log_history, out / "loss_curve.png")
    write_card(
        adapter_dir,
        config=config,
        base=base,
        choices=choices,
        metrics=metrics,
        data_hash=data_fingerprint(config.data),
        template_hash=template_fingerprint(template or getattr(tokenizer, "chat_template", "") or ""),
        data_stats=stats,
        loss_curve=curve,
    )
    return TrainResult(adapter_dir, base, choices, metrics, trainer.state.log_history, model)


def _sft_trainer(config: TrainConfig, choices: RunChoices, model: Any, tokenizer: Any, template: str | None,
                 counter: TokenCounter, fits: Callable[..., None],
                 callbacks: list[Any]) -> tuple[Any, Any]:  # fmt: skip
    """transformers' Trainer on the data's assistant turns, and the eval split (None without one). ``fits`` is
    called with the longest example's length (:func:`check_memory_fits`): it refuses a run that cannot fit."""
    train_set, eval_set, data_report = load_examples(config.data, tokenizer, template, seed=config.training.seed)
    logger.info("Data: %s", data_report)
    fits(longest=data_report.longest)
    # Unsloth patches attention itself: whether packed examples stay apart there is unverified, so pad.
    attention = None if choices.backend == "unsloth" else getattr(model.config, "_attn_implementation", None)
    collator, collate_reason = make_collator(config.data, tokenizer, attention)
    grouped = ", examples of similar length batched together" if config.data.group_by_length else ""
    logger.info("Batching: %s%s", collate_reason, grouped)
    trainer = trainer_class(counter, choices.chunked_loss)(
        model=model,
        args=_training_arguments(config, choices, eval_set is not None, model),
        train_dataset=train_set,
        eval_dataset=eval_set,
        data_collator=collator,
        callbacks=[counter, PeakMemory(), *callbacks],
    )
    if trainer.uses_chunked_loss():
        logger.info("Loss: from the last hidden state in chunks (no full logits held)")
    return trainer, eval_set


def _grpo_trainer(config: TrainConfig, choices: RunChoices, model: Any, tokenizer: Any, template: str | None,
                  callbacks: list[Any]) -> tuple[Any, None]:  # fmt: skip
    """TRL's GRPOTrainer on the data's tool decisions (:mod:`lorastack.finetune.grpo`); no eval split."""
    from transformers import PrinterCallback, ProgressCallback

    trl = import_trl()

    if not choices.on_gpu:
        use_torch_log_probs()

    prompts, report = grpo_dataset(config, tokenizer, template)
    training = config.training
    needed = training.batch_size * training.grad_accum // config.grpo.generations  # prompts one step samples from
    if len(prompts) < needed:
        raise LorastackError(
            f"{len(prompts)} prompt(s) in the data, but one GRPO step takes {needed} ({training.batch_size} replies "
            f"x {training.grad_accum} accumulation / {config.grpo.generations} per prompt): no step would run.",
            "Add prompts, or lower training.batch_size (a multiple of grpo.generations).",
        )
    logger.info("Data: %s; %d replies sampled per prompt", report, config.grpo.generations)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.clean_up_tokenization_spaces = False  # TRL decodes the samples: no WordPiece clean-up on a BPE vocabulary
    trainer = trl.GRPOTrainer(
        model=model,
        reward_funcs=[tool_decision],
        args=grpo_arguments(config, _training_settings(config, choices, False, model)),
        train_dataset=prompts,
        processing_class=tokenizer,
        callbacks=[PeakMemory(), *callbacks],
    )
    trainer.remove_callback(PrinterCallback)  # raw dicts on stdout: progress is the callbacks' to show
    trainer.remove_callback(ProgressCallback)
    return trainer, None


def _token_metrics(counter: TokenCounter, seconds: float, device: Any) -> dict[str, Any]:
    """Tokens trained on and tokens/s, totals over the processes (collectives: every process computes them, rank 0
    writes them)."""
    tokens = int(total_over_ranks(counter.tokens, device))
    steady = counter.steady_tokens_per_second()
    unknown = total_over_ranks(float(steady is None), device)  # a process whose run was too short to tell
    steady = total_over_ranks(steady, device) if unknown == 0 else None
    return {
        "tokens_per_second": round(tokens / seconds, 1) if seconds else None,
        "non_padding_tokens": tokens,
        "steady_tokens_per_second": _rounded(steady),
    }


def _rewards(trainer: Any) -> dict[str, float | None]:
    """A GRPO run's mean reward at its first and last logged steps (the share of replies that did right)."""
    means = [h["reward"] for h in trainer.state.log_history if "reward" in h]
    return {
        "first_reward": round(means[0], 4) if means else None,
        "last_reward": round(means[-1], 4) if means else None,
    }


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _peak_memory(choices: RunChoices, device: Any) -> dict[str, float]:
    """The peak of the process that peaked highest (per GPU, or per process's RSS on the CPU)."""
    if choices.on_gpu:
        return {"peak_gpu_memory_gib": round(total_over_ranks(PeakMemory.gib(device), device, "max"), 2)}
    # ru_maxrss is KiB on Linux.
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return {"peak_rss_gib": round(total_over_ranks(rss, device, "max"), 2)}


def _final_eval_loss(trainer: Any) -> float:
    """The eval loss at the last step: reused when the Trainer has just evaluated there, else computed."""
    history = trainer.state.log_history
    last = next((h for h in reversed(history) if "eval_loss" in h), None)
    if last is not None and last.get("step") == trainer.state.global_step:
        return float(last["eval_loss"])
    return float(trainer.evaluate()["eval_loss"])


def _cast_adapter(adapter_dir: Path, dtype_name: str) -> None:
    """Rewrite the saved adapter weights in ``dtype_name`` (float32 leaves them as peft saved them)."""
    if dtype_name == "float32":
        return
    import torch
    from safetensors.torch import load_file, save_file

    path = adapter_dir / "adapter_model.safetensors"
    dtype = getattr(torch, dtype_name)
    tensors = {k: v.to(dtype) if v.is_floating_point() else v for k, v in load_file(path).items()}
    tmp = path.with_suffix(".tmp")
    save_file(tensors, tmp, metadata={"format": "pt"})
    tmp.replace(path)


def _portable_base_name(adapter_dir: Path, base: Any) -> None:
    """Record the base as it names itself for adapters (the embedded default by its name, not by this machine's
    cache folder), so the adapter registers anywhere."""
    if base.adapter_base_name is None:
        return
    path = adapter_dir / "adapter_config.json"
    config = json.loads(path.read_text())
    config["base_model_name_or_path"] = base.adapter_base_name
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
