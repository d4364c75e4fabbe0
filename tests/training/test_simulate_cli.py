"""`netprog simulate`: the modality-effects option of the generator from the command line."""

from __future__ import annotations

import numpy as np
import pandas as pd
from click.testing import CliRunner

from training.cli import main


def _simulated(tmp_path, *options):
    out = tmp_path / f"cohort{'-'.join(options)}.csv"
    result = CliRunner().invoke(
        main, ["simulate", "--n", "300", "--seed", "2", "--out", str(out), *options]
    )
    assert result.exit_code == 0, result.output
    return pd.read_csv(out)


def test_published_effects_give_g3_sirt_its_table_1_hazard_ratio_and_shrunk_a_smaller_one(
    tmp_path,
):
    default = _simulated(tmp_path)
    shrunk = _simulated(tmp_path, "--effects", "shrunk")
    published = _simulated(tmp_path, "--effects", "published")
    pd.testing.assert_frame_equal(default, shrunk)
    g3 = (published["who_grade"] == "G3").to_numpy()
    # Within one patient, SIRT minus TACE is exactly the SIRT-in-G3 log hazard ratio.
    published_effect = (published["true_lp_os_SIRT"] - published["true_lp_os_TACE"])[g3]
    shrunk_effect = (shrunk["true_lp_os_SIRT"] - shrunk["true_lp_os_TACE"])[g3]
    np.testing.assert_allclose(published_effect, np.log(10.02))
    assert np.all(shrunk_effect < np.log(10.02) - 0.3)


def test_an_unknown_effects_option_is_refused_with_the_choices(tmp_path):
    result = CliRunner().invoke(
        main, ["simulate", "--n", "10", "--out", str(tmp_path / "x.csv"), "--effects", "mean"]
    )
    assert result.exit_code == 2
    assert "shrunk" in result.output
    assert "published" in result.output
