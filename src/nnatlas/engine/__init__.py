"""Task-agnostic training: trainer, tasks, optimisers and schedules, run folders."""

from nnatlas.engine.optim import OPTIMIZERS, SCHEDULERS, build_optimizer, build_scheduler, param_groups
from nnatlas.engine.runs import RunDirError, append_jsonl, create_run_dir, read_jsonl, write_json
from nnatlas.engine.seq2seq_task import Seq2SeqTask
from nnatlas.engine.tasks import ClassificationTask, Task
from nnatlas.engine.trainer import ProgressReporter, TrainConfig, Trainer, resolve_device

__all__ = [
    "OPTIMIZERS",
    "SCHEDULERS",
    "ClassificationTask",
    "ProgressReporter",
    "RunDirError",
    "Seq2SeqTask",
    "Task",
    "TrainConfig",
    "Trainer",
    "append_jsonl",
    "build_optimizer",
    "build_scheduler",
    "create_run_dir",
    "param_groups",
    "read_jsonl",
    "resolve_device",
    "write_json",
]
