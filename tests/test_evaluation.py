"""runtime.evaluation: one model's figures on one split, as the model card, runtime eval and the benchmark give them."""

from __future__ import annotations

import numpy as np
import pytest

from runtime.errors import ConfigError
from runtime.evaluation import check_prevalence, format_rate, split_summary
from runtime.stats import auc_interval, predictive_values, wilson


def _split():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], [140, 60])
    logits = rng.normal(0, 1, y.size) + 1.8 * y - 0.5
    return y, logits


def test_every_rate_carries_its_interval_and_what_one_image_is_worth():
    y, logits = _split()
    out = split_summary(y, logits, {"youden": 0.5, "screen": 0.2})
    assert (out["n"], out["positives"]) == (200, 60)
    assert out["one_image"] == {"sensitivity": 1 / 60, "specificity": 1 / 140, "accuracy": 1 / 200}
    assert out["auc_interval"] == auc_interval(y, 1 / (1 + np.exp(-logits))).to_dict()
    for name in ("youden", "screen"):
        row = out[name]
        assert row["intervals"]["sensitivity"] == wilson(row["tp"], 60).to_dict()
        assert row["intervals"]["specificity"] == wilson(row["tn"], 140).to_dict()
        assert row["intervals"]["accuracy"] == wilson(row["tp"] + row["tn"], 200).to_dict()
        pv = row["at_prevalence"]
        assert pv["prevalence"] == 0.3 and not pv["stated"]  # the split's own: 60 of 200
        assert pv["ppv"]["value"] == pytest.approx(row["ppv"], rel=1e-12)
    assert out["screen"]["sensitivity"] > out["youden"]["sensitivity"]  # a lower threshold calls more positive


def test_a_stated_prevalence_moves_ppv_and_npv_by_bayes_rule():
    y, logits = _split()
    row = split_summary(y, logits, {"youden": 0.5}, prevalence=0.02)["youden"]
    ppv, npv = predictive_values(row["tp"], row["fn"], row["tn"], row["fp"], 0.02)
    assert row["at_prevalence"] == {"prevalence": 0.02, "stated": True, "ppv": ppv.to_dict(), "npv": npv.to_dict()}
    sens, spec = row["sensitivity"], row["specificity"]
    assert ppv.value == pytest.approx(sens * 0.02 / (sens * 0.02 + (1 - spec) * 0.98), rel=1e-12)
    assert ppv.value < row["ppv"] and npv.value > row["npv"]  # rarer disease: fewer true alarms, safer negatives
    assert format_rate(row, "sensitivity") == (f"{sens:.4f} [{row['intervals']['sensitivity']['low']:.4f}, "
                                               f"{row['intervals']['sensitivity']['high']:.4f}]")


@pytest.mark.parametrize("bad", [0, 1, 1.5, -0.1, "0.1"])
def test_prevalence_must_be_a_share_strictly_inside_zero_and_one(bad):
    with pytest.raises(ConfigError, match="--prevalence"):
        check_prevalence(bad)
    assert check_prevalence(None) is None and check_prevalence(0.05) == 0.05


def test_every_stage_checks_prevalence_with_the_same_rule():
    from benchmarks.config import BenchmarkConfig
    from export.config import TFLiteExportConfig
    from train.config import TrainConfig

    for make in (lambda p: TrainConfig(data="d.npz", out="o", prevalence=p), lambda p: TFLiteExportConfig(model="m", prevalence=p),
                 lambda p: BenchmarkConfig(model="m", prevalence=p)):
        with pytest.raises(ConfigError, match=r"--prevalence 1\.5: expected the share of positives"):
            make(1.5).validate()
