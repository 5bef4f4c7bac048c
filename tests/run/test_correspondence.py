"""Correspondences through the canonical: the Python API, the `congeal correspond` command, a real run."""
import json

import numpy as np
import pytest
import torch

from congeal.cli import main
from congeal.run.correspondence import Correspondence
from congeal.common.errors import InputError
from congeal.registration.queries import forward_points, reverse_points
from congeal.registration.state import load_image_state
from congeal.run.folder import RunFolder
from helpers.mini_run import make_mini_run


@pytest.fixture(scope="module")
def mini_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("mini-run")
    make_mini_run(run)
    return run


def _object_pixels(run, name, n, seed=0):
    with np.load(run / "maps" / f"{name}.npz") as data:
        ys, xs = np.nonzero(data["valid"])
    pick = np.random.default_rng(seed).choice(xs.size, size=n, replace=False)
    return np.stack([xs[pick] + 0.5, ys[pick] + 0.5], -1).astype(np.float32)


def test_transfer_lands_on_the_same_canonical_point(mini_run):
    corr = Correspondence(mini_run)
    assert corr.names == ["a", "b"]
    pts = _object_pixels(mini_run, "a", 200)
    out, valid = corr.transfer("a", "b", pts)
    assert out.shape == (200, 2) and valid.dtype == np.bool_
    assert 0.3 < valid.mean() < 1.0  # some points are hidden in b's view and must come back invalid
    assert np.isnan(out[~valid]).all()
    xyz_a, _ = forward_points(corr.state("a"), torch.tensor(pts[valid]))
    xyz_b, ok_b = forward_points(corr.state("b"), torch.tensor(out[valid]))
    assert ok_b.float().mean() > 0.9
    dist = (xyz_a - xyz_b).norm(dim=-1)[ok_b]
    assert dist.median() < 0.05  # canonical units; the object is ~1.3 long
    # tensors in, tensors out
    t_out, t_valid = corr.transfer("a", "b", torch.tensor(pts[:5]))
    assert isinstance(t_out, torch.Tensor) and t_valid.dtype == torch.bool


def test_transfer_to_the_same_image_is_the_identity(mini_run):
    pts = _object_pixels(mini_run, "b", 100, seed=1)
    out, valid = Correspondence(mini_run).transfer("b", "b", pts)
    assert valid.mean() > 0.95
    assert np.median(np.linalg.norm(out[valid] - pts[valid], axis=-1)) < 1.0


def test_identity_warp_differs_and_dense_agrees_with_points(mini_run):
    corr, ident = Correspondence(mini_run), Correspondence(mini_run, identity_warp=True)
    pts = _object_pixels(mini_run, "a", 50, seed=2)
    a, va = corr.transfer("a", "b", pts)
    b, vb = ident.transfer("a", "b", pts)
    both = va & vb
    assert np.abs(a[both] - b[both]).max() > 1.0
    flow, valid = corr.dense("a", "b")
    assert flow.shape == (130, 140, 2) and valid.shape == (130, 140)
    assert np.isnan(flow[~valid]).all()
    cols, rows = (pts[:, 0] - 0.5).astype(int), (pts[:, 1] - 0.5).astype(int)
    from_dense = flow[rows, cols] + pts
    np.testing.assert_allclose(from_dense[va], a[va], atol=1e-3)
    assert (valid[rows, cols] == va).all()


def test_bad_inputs(mini_run, tmp_path):
    with pytest.raises(InputError):
        Correspondence(tmp_path)
    with pytest.raises(InputError):
        Correspondence(mini_run).transfer("a", "b", np.zeros((3, 3)))
    with pytest.raises(InputError):
        Correspondence(mini_run).transfer("a", "nope", np.zeros((1, 2)))


def test_correspond_command(mini_run, tmp_path, capsys):
    pts = _object_pixels(mini_run, "a", 3, seed=3)
    text = ";".join(f"{x},{y}" for x, y in pts)
    assert main(["correspond", "--run", str(mini_run), "--src", "a", "--trg", "b", "--points", text,
                 "--dense", str(tmp_path / "flow.npz")]) == 0
    result = json.loads(capsys.readouterr().out)
    expected, valid = Correspondence(mini_run).transfer("a", "b", pts)
    assert result["valid"] == valid.tolist()
    for got, want, ok in zip(result["points"], expected, valid):
        assert (got is None) == (not ok)
        if ok:
            np.testing.assert_allclose(got, want, atol=1e-4)
    with np.load(tmp_path / "flow.npz") as data:
        assert data["flow"].shape == (130, 140, 2) and data["valid"].dtype == np.bool_
        assert int(data["valid"].sum()) == result["dense_valid_pixels"]
    assert main(["correspond", "--run", str(mini_run), "--src", "a", "--trg", "b", "--points", "1;2"]) == 2
    assert "x,y" in capsys.readouterr().err
    assert main(["correspond", "--run", str(mini_run), "--src", "a", "--trg", "zz", "--points", "1,2"]) == 2


@pytest.mark.slow
def test_round_trip_on_a_registered_run(synthetic_run):
    """On a real registration run: reverse(forward(p)) within 2 % of the bbox side for >= 95 % of object pixels."""
    _, run = synthetic_run("cross")
    for name in Correspondence(run).names[:3]:
        state = load_image_state(RunFolder(run).state_path(name))
        with np.load(run / "maps" / f"{name}.npz") as data:
            ys, xs = np.nonzero(data["valid"])
        side = max(xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)
        pts = torch.tensor(np.stack([xs + 0.5, ys + 0.5], -1), dtype=torch.float32)
        back, ok = reverse_points(state, forward_points(state, pts)[0])
        close = ((back - pts).norm(dim=-1) <= 0.02 * side) & ok
        assert close.float().mean() >= 0.95, name
