"""``nnatlas train segmentation``: a registered segmentation model on an embedded or file data set."""

from __future__ import annotations

import argparse
from typing import Any

from nnatlas._choices import AUGMENT_PRESETS, ON_BAD_IMAGE, SEGMENTATION_DATA
from nnatlas._suggest import unknown_choice_message
from nnatlas._validate import InvalidValue, check_finite, check_int
from nnatlas.cli.common import parse_kwargs
from nnatlas.cli.tasks.base import Built, Recipe, register_recipe

FILE_DATA = ("voc", "segfolder")
FILE_ONLY = {
    "data_dir": ("--data-dir", FILE_DATA),
    "download": ("--download", ("voc",)),
    "on_bad_image": ("--on-bad-image", FILE_DATA),
    "num_classes": ("--num-classes", ("segfolder",)),
}

#: Builder arguments the recipe gives a model unless ``--model-kwargs`` says otherwise: sizes that train on
#: a laptop CPU. The registry's own defaults are the papers' networks.
MODEL_DEFAULTS: dict[str, dict[str, Any]] = {
    "unet": {"padding": True, "base_channels": 16},  # 1.94M parameters; the paper's unpadded net is 31M
    # On 64 px images ResNet-18 at output stride 16 gives a 4 x 4 map: ASPP's rates 6/12/18 would only
    # read zero padding there (each branch a 1 x 1 convolution in effect), rates 1/2/3 read the map.
    "deeplab_v3plus": {"atrous_rates": (1, 2, 3), "aspp_channels": 64, "decoder_channels": 64},
}

#: Options (by dest) a model trains with unless they are given: what lets ``nnatlas train segmentation --model M`` reach
#: the figures of benchmarks/RESULTS.md on a 2-core CPU. Options not listed keep the task's defaults.
RUN_DEFAULTS: dict[str, dict[str, Any]] = {
    "unet": {"epochs": 6, "batch_size": 32},
    "deeplab_v3plus": {"epochs": 4, "batch_size": 8, "lr": 5e-3},
}


@register_recipe
class Segmentation(Recipe):
    name = "segmentation"
    help = "a semantic segmentation model (default: unet on the embedded 64x64 shapes scenes)"
    description = (
        "Train a registered segmentation model: per-pixel cross-entropy (255 = no label), pixel accuracy, "
        "per-class IoU and mIoU. With no options it trains a padded U-Net on seeded 64x64 scenes of circles, "
        "squares, triangles and crosses that ship with the package. Pascal VOC (--data voc) and a folder of "
        "images with PNG masks (--data segfolder) are read from --data-dir."
    )
    default_model = "unet"
    default_data = "shapes"
    defaults: dict[str, Any] = {}
    builder_defaults = MODEL_DEFAULTS
    run_defaults = RUN_DEFAULTS
    summary_keys = ("val_miou", "val_pixel_acc", "val_loss")

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        g = parser.add_argument_group("segmentation")
        g.add_argument(
            "--model",
            default=self.default_model,
            help=f"registered segmentation model, see `nnatlas models --task segmentation` "
            f"(default: {self.default_model})",
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
            help="arguments of the model's builder, e.g. output_stride=8 aux_loss=True (Python literals)",
        )
        g.add_argument(
            "--aux-weight", type=float, default=0.5, help="weight of an auxiliary head's loss (default: 0.5)"
        )
        g.add_argument(
            "--dice-weight", type=float, default=0.0, help="weight of a soft Dice term (default: 0)"
        )
        g.add_argument(
            "--augment",
            default="none",
            choices=AUGMENT_PRESETS,
            help="joint image + mask augmentation: basic = flip and scale-crop, strong = also colour jitter "
            "(default: none)",
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
            help="an unreadable image or mask: stop with its path (error) or skip it with a warning",
        )
        g.add_argument(
            "--num-classes", type=int, default=None, help="classes of segfolder (default: the largest id + 1)"
        )

    def check(self, args: argparse.Namespace, explicit: set[str]) -> None:
        if args.data not in SEGMENTATION_DATA:
            raise ValueError(unknown_choice_message("data set", args.data, SEGMENTATION_DATA))
        check_finite("--aux-weight", args.aux_weight, minimum=0.0)
        check_finite("--dice-weight", args.dice_weight, minimum=0.0)
        if args.image_size is not None:
            check_int("--image-size", args.image_size, minimum=8, maximum=4096)
        if args.num_classes is not None:
            check_int("--num-classes", args.num_classes, minimum=2, maximum=254)
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
        return {**kwargs, "num_classes": data.num_classes, "in_channels": data.in_channels}

    def build(self, args: argparse.Namespace) -> Built:
        import torch

        from nnatlas.data import load_dataset
        from nnatlas.engine import SegmentationTask
        from nnatlas.models import create_model, get_model_info

        info = get_model_info(args.model)
        if info.task != self.name:
            raise ValueError(f"model {args.model!r} is a {info.task} model; the task is {self.name}")
        options: dict[str, Any] = {"seed": args.seed, "augment": args.augment, "image_size": args.image_size}
        if args.data in FILE_DATA:
            options.update(data_dir=args.data_dir, on_bad_image=args.on_bad_image)
        if args.data == "voc":
            options["download"] = args.download
        if args.data == "segfolder":
            options["num_classes"] = args.num_classes
        data = load_dataset(args.data, task=self.name, **options)
        from nnatlas.cli.tasks.classification import limit

        train = limit(data.train, args.limit_train)
        kwargs = self.model_kwargs(args, data)
        torch.manual_seed(args.seed)
        try:
            model = create_model(args.model, **kwargs)
        except TypeError as e:
            raise ValueError(f"--model-kwargs: {args.model} does not take them: {e}") from None
        # The built model knows its limit (a padded U-Net needs 16 px, the paper's 188 px without overlap-tile).
        min_size = getattr(model, "min_size", info.min_size)
        if min(data.image_size) < min_size:
            h, w = data.image_size
            raise ValueError(
                f"model {args.model!r} needs images of at least {min_size}x{min_size} pixels; "
                f"data set {data.name!r} has {h}x{w}"
            )
        task = SegmentationTask(
            data.num_classes,
            ignore_index=data.ignore_index,
            aux_weight=args.aux_weight,
            dice_weight=args.dice_weight,
            class_names=data.classes,
        )
        extra = {
            "num_classes": data.num_classes,
            "in_channels": data.in_channels,
            "classes": list(data.classes),
            "palette": [list(c) for c in data.palette],
            "mean": None if data.mean is None else list(data.mean),
            "std": None if data.std is None else list(data.std),
            "image_size": list(data.image_size),
            "ignore_index": data.ignore_index,
        }
        return Built(
            model=model,
            task=task,
            train=train,
            val=data.val,
            data_name=data.name,
            model_kwargs=kwargs,
            collate_fn=data.collate_fn,
            extra_config=extra,
            data_summary=f"{data.name} ({len(train):,} train / {len(data.val):,} val, {data.num_classes} classes)",
        )
