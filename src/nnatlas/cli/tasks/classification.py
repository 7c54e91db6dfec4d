"""``nnatlas train classification``: a registered image classifier on an embedded or file data set."""

from __future__ import annotations

import argparse
from typing import Any

from nnatlas._choices import AUGMENT_PRESETS, EMBEDDED_IMAGE_DATA, FILE_IMAGE_DATA, ON_BAD_IMAGE
from nnatlas._suggest import unknown_choice_message
from nnatlas._validate import InvalidValue, check_int, check_probability
from nnatlas.cli.tasks.base import Built, Recipe, register_recipe

#: Options that only mean something for data read from files, with the data sets they apply to.
FILE_ONLY = {
    "data_dir": ("--data-dir", FILE_IMAGE_DATA),
    "download": ("--download", FILE_IMAGE_DATA[:-1]),
    "image_size": ("--image-size", ("shapes", "imagefolder")),
    "on_bad_image": ("--on-bad-image", ("imagefolder",)),
}


@register_recipe
class Classification(Recipe):
    name = "classification"
    help = "an image classifier (default: cifar_resnet20 on the embedded 8x8 digits)"
    description = (
        "Train a registered image classifier. With no options it trains a ResNet-20 on scikit-learn's 8x8 "
        "digits, which ship with the package (no download). The run goes to runs/<name>/: config.json, "
        "metrics.jsonl and metrics.csv (one row per epoch), checkpoint.pt, model.safetensors and curves.png. "
        "An existing run folder is never overwritten: a second run gets the suffix -2, -3, ..."
    )
    default_model = "cifar_resnet20"
    default_data = "digits"
    defaults: dict[str, Any] = {}
    summary_keys = ("val_acc", "val_loss")

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        g = parser.add_argument_group("classification")
        g.add_argument(
            "--model",
            default=self.default_model,
            help=f"registered classification model, see `nnatlas models --task classification` "
            f"(default: {self.default_model})",
        )
        g.add_argument(
            "--data",
            default=self.default_data,
            help=f"data set: embedded {', '.join(EMBEDDED_IMAGE_DATA)}; from files "
            f"{', '.join(FILE_IMAGE_DATA)} (default: {self.default_data})",
        )
        g.add_argument(
            "--label-smoothing",
            type=float,
            default=0.0,
            help="label smoothing of the cross-entropy, e.g. 0.1 for Inception-v3 (default: 0)",
        )
        g.add_argument(
            "--augment",
            default="none",
            choices=AUGMENT_PRESETS,
            help="training augmentation: basic = random crop + flip, strong = also rotation and scale "
            "(default: none)",
        )
        g = parser.add_argument_group("data from files")
        g.add_argument(
            "--data-dir", default="data", help="folder holding the data set's files (default: data)"
        )
        g.add_argument(
            "--download", action="store_true", help="download the data set into --data-dir if missing"
        )
        g.add_argument(
            "--image-size",
            type=int,
            default=None,
            help="image side for imagefolder (default 224) and shapes (default 32)",
        )
        g.add_argument(
            "--on-bad-image",
            default="error",
            choices=ON_BAD_IMAGE,
            help="an unreadable image in imagefolder: stop with its path (error) or skip it with a warning "
            "(default: error)",
        )

    def check(self, args: argparse.Namespace, explicit: set[str]) -> None:
        if args.data not in EMBEDDED_IMAGE_DATA + FILE_IMAGE_DATA:
            raise ValueError(
                unknown_choice_message("data set", args.data, EMBEDDED_IMAGE_DATA + FILE_IMAGE_DATA)
            )
        check_probability("--label-smoothing", args.label_smoothing)
        if args.image_size is not None:
            check_int("--image-size", args.image_size, maximum=4096)
        for dest, (flag, applies) in FILE_ONLY.items():
            if dest in explicit and args.data not in applies:
                raise InvalidValue(
                    flag, f"applies to --data {', '.join(applies)} only (the data is {args.data!r})",
                    getattr(args, dest),
                )  # fmt: skip

    def build(self, args: argparse.Namespace) -> Built:
        import torch

        from nnatlas.data import load_dataset
        from nnatlas.engine import ClassificationTask
        from nnatlas.models import create_model, get_model_info

        info = get_model_info(args.model)
        if info.task != self.name:
            raise ValueError(f"model {args.model!r} is a {info.task} model; the task is {self.name}")
        data = load_dataset(
            args.data,
            task=self.name,
            seed=args.seed,
            data_dir=args.data_dir,
            download=args.download,
            augment=args.augment,
            image_size=args.image_size,
            on_bad_image=args.on_bad_image,
        )
        if min(data.image_size) < info.min_size:
            h, w = data.image_size
            raise ValueError(
                f"model {args.model!r} needs images of at least {info.min_size}x{info.min_size} pixels; "
                f"data set {data.name!r} has {h}x{w}"
            )
        train = limit(data.train, args.limit_train)
        model_kwargs = {"num_classes": data.num_classes, "in_channels": data.in_channels}
        torch.manual_seed(args.seed)
        model = create_model(args.model, **model_kwargs)
        return Built(
            model=model,
            task=ClassificationTask(data.num_classes, label_smoothing=args.label_smoothing),
            train=train,
            val=data.val,
            data_name=data.name,
            model_kwargs=model_kwargs,
            collate_fn=data.collate_fn,
            extra_config={"num_classes": data.num_classes, "in_channels": data.in_channels},
            data_summary=f"{data.name} ({len(train):,} train / {len(data.val):,} val)",
        )


def limit(dataset: Any, n: int | None) -> Any:
    """The first ``n`` samples of ``dataset`` (all of it when ``n`` is None)."""
    if n is None:
        return dataset
    from torch.utils.data import Subset

    return Subset(dataset, range(min(n, len(dataset))))
