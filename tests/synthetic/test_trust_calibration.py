import numpy as np

from congeal.registration.trust import TrustConfig
from congeal.synthetic.trust_calibration import calibrate, flag_table


def _runs(seed: int, n_runs: int = 12):
    """Runs of 8 photos: right cameras fit well; wrong ones (one run in two has one) fit worse than their
    collection and their colours disagree more, with overlap, like the benchmark's."""
    rng = np.random.default_rng(seed)
    runs = []
    for r in range(n_runs):
        level = rng.uniform(0.8, 0.95)  # a hard collection fits worse everywhere
        photos = []
        for i in range(8):
            wrong = r % 2 == 0 and i == 0
            photos.append({
                "error_deg": float(rng.uniform(60, 175) if wrong else rng.uniform(0.2, 6.0)),
                "iou": float(level - (rng.uniform(0.05, 0.2) if wrong else rng.normal(0, 0.02))),
                "feature_distance": float(rng.uniform(0.3, 0.6) if wrong else rng.uniform(0.1, 0.4)),
                "ambiguity": float(rng.uniform(0.6, 1.0)),
                "disagreement": float(rng.uniform(0.05, 0.15)),
                "undecided": False,
            })
        runs.append(photos)
    return runs


def test_the_fitted_model_flags_the_wrong_cameras_of_its_tuning_runs_and_few_right_ones():
    tuning = _runs(0)
    fitted = calibrate(tuning, target_recall=0.95)
    table = flag_table(tuning, fitted.config)
    assert fitted.n_wrong == 6 and table["flag_recall"] >= 0.95
    assert table["false_alarm_rate"] <= 0.1
    assert 0.0 <= fitted.config.failed_below <= fitted.config.ok_below < 1.0


def test_the_fit_holds_on_runs_it_never_saw():
    fitted = calibrate(_runs(0, n_runs=20))
    held_out = flag_table(_runs(1, n_runs=20), fitted.config)
    assert held_out["flag_recall"] >= 0.8 and held_out["false_alarm_rate"] <= 0.15, held_out


def test_an_uninformative_model_flags_nothing_and_everything_is_counted():
    runs = _runs(2, n_runs=4)
    table = flag_table(runs, TrustConfig(bias=10.0, weights=(0.0,) * 6, ok_below=0.5, failed_below=0.2))
    assert table["n_photos"] == 32 and table["wrong_flagged"] == 0 and table["right_flagged"] == 0
    assert table["unflagged_max_deg"] >= 60.0
