"""The loss-curve picture: the trailing moving average and the written PNG."""
import numpy as np
import pytest
from PIL import Image

from congeal.viz.loss_curve import moving_average, save_loss_curve


def test_moving_average_is_trailing():
    assert moving_average([1.0, 2.0, 3.0, 4.0], window=2).tolist() == pytest.approx([1.0, 1.5, 2.5, 3.5])
    assert moving_average(np.array([2.0, 4.0]), window=5).tolist() == pytest.approx([2.0, 3.0])
    assert moving_average([], window=3).size == 0


def test_save_loss_curve_writes_a_png(tmp_path):
    losses = [1.0 / (k + 1) for k in range(50)] + [float("nan")]
    path = save_loss_curve(tmp_path / "curve.png", losses, width=200, height=120)
    assert Image.open(path).size == (200, 120)
    assert Image.open(save_loss_curve(tmp_path / "empty.png", [])).size == (640, 360)
