"""benchmarks/seg_postproc_cv.py's choice of post-processing: leave-one-fold-out (each fold
scored with the setting best on the others, never the one best on itself) and the grids it
chooses among."""
from __future__ import annotations

import numpy as np

from benchmarks.seg_postproc_cv import grids, lofo
from models.segmenter import BlobRule


def test_each_fold_is_scored_with_the_setting_best_on_the_other_folds():
    # setting 0 is best on folds 1 and 2, setting 1 on fold 0 alone
    M = np.array([[0.50, 0.70, 0.70],
                  [0.90, 0.60, 0.60]])
    lines = lofo("nerve", [{"t": 0}, {"t": 1}], M)
    assert "fold 0 held out, chosen on the others {'t': 0} -> 0.500" in lines[0]
    assert "fold 1 held out, chosen on the others {'t': 1} -> 0.600" in lines[1]
    assert "fold 2 held out, chosen on the others {'t': 1} -> 0.600" in lines[2]
    assert "leave-one-fold-out 0.567" in lines[3]  # not 0.767, the best per fold
    assert "chosen on all folds: {'t': 1}" in lines[3]


def test_the_wide_grid_holds_each_class_threshold_and_keeps_the_thin_fascia():
    """Rule PP16's grid: the threshold of each class among its settings, every setting a
    valid blob rule, and fascia never dropping blobs over 0.1 % of the frame (larger
    minimums lose the thin SIMULATED fascia, model card)."""
    wide = grids("wide")
    assert {k: len(v) for k, v in wide.items()} == {
        ("usgra", "nerve"): 12, ("usgra", "vessel"): 15, ("dltrack", "fascia"): 6}
    for settings in wide.values():
        assert len({g["threshold"] for g in settings}) >= 3
        for g in settings:
            BlobRule(**g)  # no field the runtime does not know
    assert all(g["min_blob_frac"] <= 0.001 for g in wide[("dltrack", "fascia")])
    assert all(g["keep_largest"] == (g["min_blob_mean_prob"] > 0)
               for k in (("usgra", "nerve"), ("usgra", "vessel")) for g in wide[k])
