"""Tasks for the trainer, one file each, registered by name: classification, seq2seq."""

from nnatlas.engine.tasks.base import Task, get_task_class, list_tasks, register_task
from nnatlas.engine.tasks.classification import ClassificationTask
from nnatlas.engine.tasks.seq2seq import Seq2SeqTask

__all__ = ["ClassificationTask", "Seq2SeqTask", "Task", "get_task_class", "list_tasks", "register_task"]
