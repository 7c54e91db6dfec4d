"""Task-agnostic training: trainer, tasks, optimisers and schedules, checkpoints, data parallelism, run
folders."""

from nnatlas.engine.checkpoint import (
    CHECKPOINT_NAME,
    CheckpointError,
    describe_mismatch,
    load_checkpoint,
    load_model_state,
    read_safetensors,
    read_torch_file,
    save_checkpoint,
)
from nnatlas.engine.config import TrainConfig
from nnatlas.engine.distributed import DistInfo, EpochSampler, dist_info, init_distributed
from nnatlas.engine.ema import ModelEma
from nnatlas.engine.logger import MetricsLogger, tensorboard_available, write_csv
from nnatlas.engine.optim import OPTIMIZERS, SCHEDULERS, build_optimizer, build_scheduler, param_groups
from nnatlas.engine.runs import (
    NON_FINITE_KEY,
    RunDirError,
    append_jsonl,
    create_run_dir,
    read_jsonl,
    remove_stale_temporaries,
    write_json,
)
from nnatlas.engine.tasks import (
    ClassificationTask,
    Seq2SeqTask,
    Task,
    get_task_class,
    list_tasks,
    register_task,
)
from nnatlas.engine.trainer import (
    TIME_FIELDS,
    NonFiniteLossError,
    Position,
    ProgressReporter,
    Trainer,
    TrainingInterrupted,
    best,
    check_amp,
    evaluate_model,
    resolve_device,
    set_determinism,
)

__all__ = [
    "CHECKPOINT_NAME",
    "NON_FINITE_KEY",
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
    "Position",
    "ProgressReporter",
    "RunDirError",
    "Seq2SeqTask",
    "Task",
    "TrainConfig",
    "Trainer",
    "TrainingInterrupted",
    "append_jsonl",
    "best",
    "build_optimizer",
    "build_scheduler",
    "check_amp",
    "create_run_dir",
    "describe_mismatch",
    "dist_info",
    "evaluate_model",
    "get_task_class",
    "init_distributed",
    "list_tasks",
    "load_checkpoint",
    "load_model_state",
    "param_groups",
    "read_jsonl",
    "read_safetensors",
    "read_torch_file",
    "register_task",
    "remove_stale_temporaries",
    "resolve_device",
    "save_checkpoint",
    "set_determinism",
    "tensorboard_available",
    "write_csv",
    "write_json",
]
