"""The export CLIs, built from their configs: every option is a config field, declared once with its help
(``export.config.option``), so an option, its default and its help cannot drift from the field they set.

``python -m export.tflite`` and ``python -m export.onnx`` are :func:`run_export` with their config class.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import MISSING, Field, fields
from typing import Any, TypeVar

from runtime.cli import DefaultsHelpFormatter, Parser, run_cli

from .config import ExportConfig
from .session import ExportResult, summary_line

C = TypeVar("C", bound=ExportConfig)


def _default(f: Field[Any]) -> Any:
    return f.default_factory() if f.default_factory is not MISSING else f.default  # type: ignore[misc]


def build_parser(cls: type[ExportConfig]) -> argparse.ArgumentParser:
    """``python -m export.KIND``: every field of ``cls`` that declares an option, in declaration order, under its group."""
    p = Parser(prog=f"python -m export.{cls.kind}", description=cls.cli_description, epilog=f"example: {cls.cli_example}",
               formatter_class=DefaultsHelpFormatter)
    groups: dict[str, Any] = {}
    for f in fields(cls):
        spec = dict(f.metadata.get("cli", {}))
        if not spec:
            continue
        group, flag = spec.pop("group"), spec.pop("flag", "--" + f.name.replace("_", "-"))
        target = p if group is None else groups.setdefault(group, p.add_argument_group(group))
        if not spec.get("required"):
            spec["default"] = _default(f)
        target.add_argument(flag, dest=f.name, **spec)
    return p


def config_from_args(cls: type[C], args: argparse.Namespace) -> C:
    """``cls`` from the parsed options: each field from the option of the same name."""
    return cls(**{f.name: getattr(args, f.name) for f in fields(cls)})


def run_export(cls: type[C], export: Callable[[C], ExportResult | list[ExportResult]], argv: list[str] | None) -> int:
    """A format's ``main``: parse, build the config, export, print one line per published artifact."""
    args = build_parser(cls).parse_args(argv)

    def action() -> None:
        results = export(config_from_args(cls, args))
        for result in results if isinstance(results, list) else [results]:
            print(f"{result.path}  {result.sidecar.bytes / 1e6:.1f} MB  {summary_line(result.verification)}")

    return run_cli(action)
