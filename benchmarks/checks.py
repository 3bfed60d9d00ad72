"""What ``pytest benchmarks/`` asserts about each int8 file, as functions that return the problems found.

Each returns one line per problem (an empty list: none), naming the file, the figure and the
bound, so a failing check reads the same in pytest and in any script that calls these.
"""

from __future__ import annotations

from export.config import DriftLimits
from export.report import VerificationReport

from .results import SLOWER_MARGIN, FormatResult


def export_gate_problems(name: str, verification: VerificationReport, limits: DriftLimits) -> list[str]:
    """Did the file's export show, under its default gate and at limits no looser than ``limits``, that it drifts
    within them? An export made with ``--max-drift none`` judged nothing, so it cannot vouch for the file."""
    if verification.limits is None:
        unjudged = (f"{name}: exported with --max-drift none, so its export judged nothing; export it with limits "
                    f"(at most {limits.spec()}) for these checks to hold it to them")
        return [unjudged]
    problems = []
    if not verification.passed:
        problems.append(f"{name}: its export refused it: {'; '.join(verification.failures)}")
    if verification.gate.rule != "noninferiority":
        problems.append(f"{name}: exported under --gate {verification.gate.rule}, not the non-inferiority gate")
    looser = {k: v for k, v in verification.limits.to_dict().items()
              if (v < getattr(limits, k) if k == "agreement" else v > getattr(limits, k))}
    if looser:
        problems.append(f"{name}: exported at looser limits {looser} than {limits.to_dict()}")
    return problems


def speed_problems(row: FormatResult) -> list[str]:
    """Is the int8 file shown slower (beyond ``SLOWER_MARGIN``, at 95% confidence) than the float model it replaces?"""
    if row.speed is None:
        return [f"{row.name}: no float counterpart was measured beside it"]
    if row.speed.verdict == "slower":
        slower = (f"{row.name}: {row.speed.line()}; the int8 file is slower than the float model it replaces by more than "
                  f"{SLOWER_MARGIN:.0%} (95% confidence)")
        return [slower]
    return []
