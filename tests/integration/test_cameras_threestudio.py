"""congeal.geometry.cameras against threestudio's own camera code (`threestudio/data/uncond.py`, `utils/ops.py`).

    THREESTUDIO_ROOT=/path/to/threestudio python -m pytest tests/integration/test_cameras_threestudio.py -q

Skipped (by tests/integration/conftest.py) unless THREESTUDIO_ROOT names a checkout. threestudio's random-camera
data module is run with its perturbations switched off, and the c2w matrices, rays and projection it produces are
compared with ours built from the same azimuth / elevation / distance / fovy.
"""
import math

import pytest
import torch

from congeal.geometry.cameras import Cameras, c2w_from_spherical, get_rays, project

pytestmark = pytest.mark.integration

HEIGHT, WIDTH = 12, 16  # not square: fovy must span the height in both


def _random_camera_dataset(threestudio, batch_size):
    from threestudio.data.uncond import RandomCameraDataModuleConfig, RandomCameraIterableDataset
    from threestudio.utils.config import parse_structured

    cfg = parse_structured(RandomCameraDataModuleConfig, {
        "height": HEIGHT, "width": WIDTH, "batch_size": batch_size,
        "camera_perturb": 0.0, "center_perturb": 0.0, "up_perturb": 0.0,
        "elevation_range": [-10.0, 80.0], "camera_distance_range": [1.2, 3.5], "fovy_range": [20.0, 70.0],
    })
    return RandomCameraIterableDataset(cfg)


@pytest.mark.parametrize("batch_size", [4, 7])  # never exactly 3: threestudio's torch.cross has no dim=
def test_c2w_and_rays_match_random_camera_dataset(threestudio, batch_size):
    torch.manual_seed(batch_size)
    batch = _random_camera_dataset(threestudio, batch_size).collate(None)
    ours = c2w_from_spherical(batch["azimuth"], batch["elevation"], batch["camera_distances"])
    assert torch.allclose(ours, batch["c2w"], atol=1e-5), (ours - batch["c2w"]).abs().max()
    origins, directions = get_rays(Cameras.centred(ours, batch["fovy"], HEIGHT, WIDTH))
    assert torch.allclose(origins, batch["rays_o"], atol=1e-5)
    assert torch.allclose(directions, batch["rays_d"], atol=1e-5)


def test_projection_matches_the_mvp_matrix(threestudio):
    torch.manual_seed(0)
    batch = _random_camera_dataset(threestudio, 4).collate(None)
    points = torch.rand(4, 50, 3) - 0.5
    xy, depth = project(points, Cameras.centred(batch["c2w"], batch["fovy"], HEIGHT, WIDTH))
    clip = torch.einsum("bij,bnj->bni", batch["mvp_mtx"], torch.cat([points, torch.ones(4, 50, 1)], dim=-1))
    ndc = clip[..., :2] / clip[..., 3:]
    # threestudio's projection flips y for nvdiffrast, whose first row is the image's top: row = (ndc_y + 1)·H/2.
    pixels = (ndc + 1.0) * 0.5 * torch.tensor([WIDTH, HEIGHT])
    assert torch.allclose(xy, pixels, atol=1e-3)
    assert torch.allclose(depth, clip[..., 3], atol=1e-5)  # w = −z_camera = our depth


def test_eval_cameras_match(threestudio):
    from threestudio.data.uncond import RandomCameraDataModuleConfig, RandomCameraDataset
    from threestudio.utils.config import parse_structured

    cfg = parse_structured(RandomCameraDataModuleConfig, {
        "eval_height": HEIGHT, "eval_width": WIDTH, "n_test_views": 6,
        "eval_elevation_deg": 25.0, "eval_camera_distance": 2.5, "eval_fovy_deg": 45.0,
    })
    dataset = RandomCameraDataset(cfg, "test")
    for index in (0, 2, 5):
        item = dataset[index]
        ours = c2w_from_spherical(item["azimuth"].reshape(1), item["elevation"].reshape(1),
                                  item["camera_distances"].reshape(1))
        assert torch.allclose(ours[0], item["c2w"], atol=1e-5)
        origins, directions = get_rays(Cameras.centred(ours, torch.tensor([math.radians(45.0)]), HEIGHT, WIDTH))
        assert torch.allclose(directions[0], item["rays_d"], atol=1e-5)
