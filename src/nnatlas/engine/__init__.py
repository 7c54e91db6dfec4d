"""Task-agnostic training: trainer, tasks, optimisers and schedules, checkpoints, data parallelism, run
folders."""

from nnatlas.engine.checkpoint import CHECKPOINT_NAME, CheckpointError, load_checkpoint, save_checkpoint
from nnatlas.engine.distributed import DistInfo, EpochSampler, dist_info, init_distributed
from nnatlas.engine.ema import ModelEma
from nnatlas.engine.logger import MetricsLogger, tensorboard_available, write_csv
from nnatlas.engine.optim import OPTIMIZERS, SCHEDULERS, build_optimizer, build_scheduler, param_groups
from nnatlas.engine.runs import RunDirError, append_jsonl, create_run_dir, read_jsonl, write_json
from nnatlas.engine.seq2seq_task import Seq2SeqTask
from nnatlas.engine.tasks import ClassificationTask, Task
from nnatlas.engine.trainer import (
    TIME_FIELDS,
    NonFiniteLossError,
    ProgressReporter,
    TrainConfig,
    Trainer,
    TrainingInterrupted,
    check_amp,
    evaluate_model,
    resolve_device,
    set_determinism,
)

__all__ = [
    "CHECKPOINT_NAME",
    "OPTIMIZERS",
    "SCHEDULERS",
    "TIME_FIELDS",
    "CheckpointError",
    "ClassificationTask",
    "DistInfo",
    "EpochSampler",
    "MetricsLogger",
    "ModelEma",
    "NonFiniteLossError",
    "ProgressReporter",
    "RunDirError",
    "Seq2SeqTask",
    "Task",
    "TrainConfig",
    "Trainer",
    "TrainingInterrupted",
    "append_jsonl",
    "build_optimizer",
    "build_scheduler",
    "check_amp",
    "create_run_dir",
    "dist_info",
    "evaluate_model",
    "init_distributed",
    "load_checkpoint",
    "param_groups",
    "read_jsonl",
    "resolve_device",
    "save_checkpoint",
    "set_determinism",
    "tensorboard_available",
    "write_csv",
    "write_json",
]
