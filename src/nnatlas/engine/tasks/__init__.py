"""Tasks for the trainer, one file each, registered by name: classification, detection, segmentation, seq2seq."""

from nnatlas.engine.tasks.base import Task, get_task_class, list_tasks, register_task
from nnatlas.engine.tasks.classification import ClassificationTask
from nnatlas.engine.tasks.detection import DetectionTask
from nnatlas.engine.tasks.segmentation import SegmentationMetrics, SegmentationTask, dice_loss
from nnatlas.engine.tasks.seq2seq import Seq2SeqTask

__all__ = [
    "ClassificationTask",
    "DetectionTask",
    "SegmentationMetrics",
    "SegmentationTask",
    "Seq2SeqTask",
    "Task",
    "dice_loss",
    "get_task_class",
    "list_tasks",
    "register_task",
]
