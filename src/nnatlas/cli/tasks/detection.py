"""``nnatlas train detection``: a registered detector on an embedded or file data set."""

from __future__ import annotations

import argparse
from typing import Any

from nnatlas._choices import AUGMENT_PRESETS, DETECTION_DATA, ON_BAD_IMAGE
from nnatlas._suggest import unknown_choice_message
from nnatlas._validate import InvalidValue, check_int
from nnatlas.cli.common import parse_kwargs
from nnatlas.cli.tasks.base import Built, Recipe, register_recipe

FILE_DATA = ("voc", "coco")
FILE_ONLY = {
    "data_dir": ("--data-dir", FILE_DATA),
    "download": ("--download", ("voc",)),
    "on_bad_image": ("--on-bad-image", FILE_DATA),
}

#: Builder arguments the recipe gives a model unless ``--model-kwargs`` says otherwise.
MODEL_DEFAULTS: dict[str, dict[str, Any]] = {}

#: Options (by dest) a model trains with unless they are given: what lets ``nnatlas train detection --model M`` reach
#: the figures of benchmarks/RESULTS.md on a 2-core CPU. Options not listed keep the task's defaults.
RUN_DEFAULTS: dict[str, dict[str, Any]] = {
    "yolo_v1": {"augment": "basic"},
    "ssd_small": {"augment": "basic"},
    "fasterrcnn_resnet18_fpn_small": {"epochs": 3, "batch_size": 16},
    "rfcn": {"epochs": 3, "batch_size": 16},
    # DETR converges slowly (the paper trains 300-500 epochs): a longer run at a lower learning rate. At the
    # engine's 3e-3 (with or without the paper's clipping to 0.1) it stalls with every slot "no object"
    # (mAP@.5 0.005 after 8 epochs); 3e-4 learns slowly (0.11 after 10), 1e-3 best (0.36 after 10).
    "detr": {"epochs": 20, "lr": 1e-3},
}


@register_recipe
class Detection(Recipe):
    name = "detection"
    help = "an object detector (default: yolo_v1 on the embedded shapes scenes)"
    description = (
        "Train a registered detector (torchvision's contract: the model computes its losses in training and "
        "returns boxes, labels and scores in eval) and measure COCO's mAP (mAP@[.5:.95], mAP@.5, mAP@.75, by "
        "object size) on the validation split. With no options it trains YOLO v1 on seeded scenes of circles, "
        "squares, triangles and crosses that ship with the package. Pascal VOC (--data voc) and COCO JSON "
        "(--data coco) are read from --data-dir."
    )
    default_model = "yolo_v1"
    default_data = "shapes"
    defaults: dict[str, Any] = {}
    builder_defaults = MODEL_DEFAULTS
    run_defaults = RUN_DEFAULTS
    summary_keys = ("val_map_50", "val_map")
    unsupported = {"channels_last": "detectors take lists of images of different sizes"}

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        g = parser.add_argument_group("detection")
        g.add_argument(
            "--model",
            default=self.default_model,
            help=f"registered detector, see `nnatlas models --task detection` (default: {self.default_model})",
        )
        g.add_argument(
            "--data",
            default=self.default_data,
            help=f"data set: embedded shapes; from files {', '.join(FILE_DATA)} (default: {self.default_data})",
        )
        g.add_argument(
            "--model-kwargs",
            nargs="+",
            default=[],
            metavar="KEY=VALUE",
            help="arguments of the model's builder, e.g. min_size=96 (Python literals)",
        )
        g.add_argument(
            "--augment",
            default="none",
            choices=AUGMENT_PRESETS,
            help="box-aware augmentation: basic = flip, random scale 0.75-1.33 and crop; strong = SSD's zoom "
            "out, IoU crop, flip and photometric distortion (default: none)",
        )
        g.add_argument("--image-size", type=int, default=None, help="image side (default: the data set's)")
        g = parser.add_argument_group("data from files")
        g.add_argument(
            "--data-dir", default="data", help="folder holding the data set's files (default: data)"
        )
        g.add_argument(
            "--download", action="store_true", help="download Pascal VOC into --data-dir if missing"
        )
        g.add_argument(
            "--on-bad-image",
            default="error",
            choices=ON_BAD_IMAGE,
            help="an unreadable image: stop with its path (error) or skip it with a warning",
        )

    def check(self, args: argparse.Namespace, explicit: set[str]) -> None:
        if args.data not in DETECTION_DATA:
            raise ValueError(unknown_choice_message("data set", args.data, DETECTION_DATA))
        if args.image_size is not None:
            check_int("--image-size", args.image_size, minimum=16, maximum=4096)
        for dest, (flag, applies) in FILE_ONLY.items():
            if dest in explicit and args.data not in applies:
                raise InvalidValue(
                    flag, f"applies to --data {', '.join(applies)} only (the data is {args.data!r})",
                    getattr(args, dest),
                )  # fmt: skip
        parse_kwargs(args.model_kwargs, "--model-kwargs")

    def model_kwargs(self, args: argparse.Namespace, data: Any) -> dict[str, Any]:
        kwargs = {
            **self.builder_defaults.get(args.model, {}),
            **parse_kwargs(args.model_kwargs, "--model-kwargs"),
        }
        return {**kwargs, "num_classes": data.num_classes}

    def build(self, args: argparse.Namespace) -> Built:
        import torch

        from nnatlas.data import load_dataset
        from nnatlas.engine import DetectionTask
        from nnatlas.models import create_model, get_model_info

        info = get_model_info(args.model)
        if info.task != self.name:
            raise ValueError(f"model {args.model!r} is a {info.task} model; the task is {self.name}")
        options: dict[str, Any] = {"seed": args.seed, "augment": args.augment, "image_size": args.image_size}
        if args.data in FILE_DATA:
            options.update(data_dir=args.data_dir, on_bad_image=args.on_bad_image)
        if args.data == "voc":
            options["download"] = args.download
        data = load_dataset(args.data, task=self.name, **options)
        if min(data.image_size) < info.min_size:
            h, w = data.image_size
            raise ValueError(
                f"model {args.model!r} needs images of at least {info.min_size}x{info.min_size} pixels; "
                f"data set {data.name!r} has {h}x{w}"
            )
        from nnatlas.cli.tasks.classification import limit

        train = limit(data.train, args.limit_train)
        kwargs = self.model_kwargs(args, data)
        torch.manual_seed(args.seed)
        try:
            model = create_model(args.model, **kwargs)
        except TypeError as e:
            raise ValueError(f"--model-kwargs: {args.model} does not take them: {e}") from None
        masks = bool(getattr(data, "has_masks", False)) and "mask" in args.model
        extra = {
            "num_classes": data.num_classes,
            "in_channels": data.in_channels,
            "classes": list(data.classes),
            "palette": [list(c) for c in data.palette],
            "image_size": list(data.image_size),
        }
        return Built(
            model=model,
            task=DetectionTask(data.num_classes, masks=masks, class_names=data.classes),
            train=train,
            val=data.val,
            data_name=data.name,
            model_kwargs=kwargs,
            collate_fn=data.collate_fn,
            extra_config=extra,
            data_summary=f"{data.name} ({len(train):,} train / {len(data.val):,} val, {data.num_classes - 1} classes)",
        )
