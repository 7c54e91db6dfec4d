"""Command-line interface: the only place that turns strings into objects and wires the parts together."""
