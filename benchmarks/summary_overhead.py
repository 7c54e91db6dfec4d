"""Cost of ``nnatlas.analysis.summary`` against one plain forward pass (torchvision ResNet-50, 224 px).

summary() runs the model once under a dispatch mode that counts MACs/FLOPs and carries receptive fields
for every ATen operator, with a hook pair on every module; the target is at most 3x one forward pass of
the same model, in eval mode under ``torch.no_grad()`` (as summary runs it), on real CPU tensors. A second
line times summary on the same model built on the meta device, where nothing is computed.

Run: ``python -m benchmarks.summary_overhead``
"""

from __future__ import annotations

import torch
import torchvision

from benchmarks.common import interleaved_ratio, machine, median_time
from nnatlas.analysis import summary


def main() -> None:
    torch.manual_seed(0)
    model = torchvision.models.resnet50().eval()
    x = torch.randn(1, 3, 224, 224)

    def forward():
        with torch.no_grad():
            model(x)

    ours, ref, ratio = interleaved_ratio(lambda: summary(model, inputs=x), forward, repeats=7)
    with torch.device("meta"):
        meta_model = torchvision.models.resnet50()
    meta = median_time(lambda: summary(meta_model, (1, 3, 224, 224)), repeats=7)
    print(machine())
    print(
        f"resnet50 224px: summary {ours * 1e3:.1f} ms, plain forward {ref * 1e3:.1f} ms, ratio {ratio:.2f}x (target <= 3x)"
    )
    print(f"resnet50 224px on the meta device: summary {meta * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
