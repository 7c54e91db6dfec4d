"""``.. registry-table::``: the model registry as a table (name, task, parameters, MACs, input), measured
at build time exactly as ``nnatlas inspect NAME`` measures it (the registry's ``input_size``, built on
the meta device, a real CPU forward only where a model needs values)."""

from __future__ import annotations

import torch
from _rst import parse_rst
from docutils import nodes
from sphinx.util.docutils import SphinxDirective

from nnatlas.analysis import MetaDeviceError, count_parameters, summary
from nnatlas.analysis.summary import si
from nnatlas.cli.inspect_cmd import build, default_shapes, make_inputs, resolve_model
from nnatlas.models import get_model_info, list_models


def measure(name: str) -> tuple[int, int, bool, str]:
    """Parameters, MACs, whether the MACs are an upper bound, and the input, of one registered model."""
    make, kind = resolve_model(name)
    for device in ("meta", "cpu"):
        try:
            torch.manual_seed(0)
            model = build(make, device, name)
            shapes = default_shapes(model, name, kind)
            result = summary(model, inputs=make_inputs(model, shapes, kind))
            break
        except MetaDeviceError:
            continue
    shown = ", ".join("x".join(map(str, s)) for s in shapes)
    return count_parameters(model), result.total_macs, bool(result.upper_bound), shown


class RegistryTable(SphinxDirective):
    has_content = False
    option_spec = {}

    def run(self) -> list[nodes.Node]:
        lines = [
            ".. list-table::",
            "   :header-rows: 1",
            "   :widths: 22 14 14 14 16 40",
            "",
            "   * - name",
            "     - task",
            "     - parameters",
            "     - MACs",
            "     - input",
            "     - description",
        ]
        for name in list_models():
            info = get_model_info(name)
            params, macs, bound, shown = measure(name)
            lines += [
                f"   * - ``{name}``",
                f"     - {info.task}",
                f"     - {params:,}",
                f"     - {'≤ ' if bound else ''}{si(macs)}",
                f"     - {shown}",
                f"     - {info.description or '-'}",
            ]
        return parse_rst(self, lines, "registry-table")


def setup(app):
    app.add_directive("registry-table", RegistryTable)
    return {"parallel_read_safe": True, "parallel_write_safe": True, "version": "1"}
