"""Refinement: recovers perturbed poses from masks, hypotheses are independent, early stopping, silhouettes."""
import torch

from congeal.geometry.cameras import c2w_from_spherical, rotation_angle_deg
from congeal.registration.framing import camera_in_frame, render_in_frame, square_boxes
from congeal.registration.refine import PoseParameters, RefineConfig, binary_iou, refine_poses, sharpen, soft_iou_loss
from congeal.canonical.render import GridRenderer
from congeal.canonical.silhouette import SilhouetteRenderer
from helpers.canonicals import small_canonical

S = 32


def working_cameras(canonical, azimuth, elevation, fov_deg):
    """Ground-truth working-frame cameras and the binary masks they see (like photos)."""
    renderer = GridRenderer(canonical, num_samples=32)
    c2w = c2w_from_spherical(torch.tensor(azimuth), torch.tensor(elevation), torch.full((len(azimuth),), 2.6))
    fovy = torch.deg2rad(torch.tensor(fov_deg))
    boxes = square_boxes(renderer.render(c2w, fovy, 96, 96)["opacity"], margin=0.1)
    c2w_w, fovy_w, principal = camera_in_frame(c2w, fovy, (96, 96), boxes, S)
    masks = (render_in_frame(renderer, c2w_w, fovy_w, principal, S)["opacity"] > 0.5).float().permute(0, 3, 1, 2)
    return c2w_w, fovy_w, principal, masks


def perturbed(c2w, fovy, principal, seed):
    params = PoseParameters.from_cameras(c2w, fovy, principal, S)
    generator = torch.Generator().manual_seed(seed)
    params.omega = torch.nn.functional.normalize(torch.randn(len(fovy), 3, generator=generator), dim=-1) * 0.17
    params.log_tan_half_fov = params.log_tan_half_fov + 0.05
    params.principal = params.principal + 0.02
    return params


def test_parameters_reproduce_cameras_exactly():
    c2w = c2w_from_spherical(torch.tensor([10.0, 250.0]), torch.tensor([30.0, -5.0]), torch.tensor([2.0, 4.0]))
    c2w[1, :3, 3] += c2w[1, :3, :3] @ torch.tensor([0.1, -0.2, 0.0])  # a lateral offset is kept too
    fovy, principal = torch.tensor([0.4, 0.7]), torch.tensor([[16.0, 16.0], [12.0, 20.0]])
    back_c2w, back_fovy, back_principal = PoseParameters.from_cameras(c2w, fovy, principal, S).cameras()
    assert torch.allclose(back_c2w, c2w, atol=1e-5) and torch.allclose(back_fovy, fovy)
    assert torch.allclose(back_principal, principal)


def test_silhouette_renderer_matches_grid_renderer_opacity():
    canonical = small_canonical()
    c2w = c2w_from_spherical(torch.tensor([30.0, 200.0]), torch.tensor([20.0, 0.0]), torch.tensor([2.5, 3.0]))
    fovy = torch.tensor([0.7, 0.5])
    grid = GridRenderer(canonical, num_samples=24).render(c2w, fovy, 24, 24)["opacity"]
    principal = torch.full((2, 2), 12.0)
    fast = render_in_frame(SilhouetteRenderer(canonical, num_samples=24), c2w, fovy, principal, 24)["opacity"]
    assert torch.allclose(fast, grid, atol=1e-4)


def test_losses():
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., 2:6, 2:6] = 1
    assert soft_iou_loss(mask, mask).item() == 0.0 and binary_iou(mask, mask).item() == 1.0
    assert torch.allclose(soft_iou_loss(torch.zeros_like(mask), mask), torch.ones(1))
    half = mask.clone()
    half[..., 2:4, 2:6] = 0
    assert torch.allclose(binary_iou(half, mask), torch.tensor([0.5]))
    assert torch.allclose(sharpen(torch.tensor([0.0, 0.5, 1.0]), 10.0), torch.tensor([0.0, 0.5, 1.0]), atol=1e-6)


def test_refinement_recovers_perturbed_poses():
    canonical = small_canonical()
    c2w, fovy, principal, masks = working_cameras(canonical, [30.0, 140.0, 260.0], [10.0, 35.0, -5.0],
                                                  [40.0, 30.0, 50.0])
    init = perturbed(c2w, fovy, principal, seed=0)
    before = rotation_angle_deg(init.cameras()[0][:, :3, :3], c2w[:, :3, :3])
    assert (before > 9.0).all()
    cfg = RefineConfig(steps=100, resolution=S, samples=24, patience=30, lr_rotation=0.03)
    result = refine_poses(SilhouetteRenderer(canonical, num_samples=24), init, masks, cfg)
    after = rotation_angle_deg(result.c2w[:, :3, :3], c2w[:, :3, :3])
    print("rotation error before", before.tolist(), "after", after.tolist())
    assert (after < 4.0).all() and after.mean() < 3.0
    assert (result.loss < soft_iou_loss(sharpen(masks, 10.0), masks) + 0.2).all()


def test_hypotheses_are_independent_of_the_batch():
    """A hypothesis refined alone or beside others ends in the same place (what `--add` relies on)."""
    canonical = small_canonical()
    c2w, fovy, principal, masks = working_cameras(canonical, [60.0, 300.0], [20.0, 5.0], [35.0, 45.0])
    renderer = SilhouetteRenderer(canonical, num_samples=16)
    cfg = RefineConfig(steps=40, resolution=24, samples=16, patience=10)
    both = refine_poses(renderer, perturbed(c2w, fovy, principal, seed=1), masks, cfg)
    alone = refine_poses(renderer, perturbed(c2w, fovy, principal, seed=1).subset(slice(1, 2)), masks[1:], cfg)
    assert torch.allclose(both.c2w[1], alone.c2w[0], atol=1e-5)
    assert both.steps[1] == alone.steps[0]
    assert torch.allclose(both.loss[1], alone.loss[0], atol=1e-6)


def test_early_stopping_freezes_converged_hypotheses():
    canonical = small_canonical()
    c2w, fovy, principal, masks = working_cameras(canonical, [45.0], [15.0], [40.0])
    cfg = RefineConfig(steps=500, resolution=16, samples=16, patience=5, min_improvement=0.05)
    result = refine_poses(SilhouetteRenderer(canonical, num_samples=16),
                          PoseParameters.from_cameras(c2w, fovy, principal, S), masks, cfg)
    assert result.steps.item() < 50  # started at the optimum: nothing to improve, it stops early
    assert rotation_angle_deg(result.c2w[0, :3, :3], c2w[0, :3, :3]) < 2.0


def test_colour_term_with_a_separate_colour_renderer():
    from congeal.features.extractors import RGBFeatures

    canonical = small_canonical()
    c2w, fovy, principal, masks = working_cameras(canonical, [30.0, 200.0], [15.0, 25.0], [40.0, 35.0])
    colour = GridRenderer(canonical, num_samples=16)
    photos = render_in_frame(colour, c2w, fovy, principal, S)["rgb"].permute(0, 3, 1, 2)
    extractor = RGBFeatures(grid=8)
    init = perturbed(c2w, fovy, principal, seed=2)
    cfg = RefineConfig(steps=60, resolution=S, samples=16, patience=20, feature_weight=1.0, feature_resolution=16)
    result = refine_poses(SilhouetteRenderer(canonical, num_samples=16), init, masks, cfg,
                          image_feats=extractor.extract(photos), extractor=extractor, feature_renderer=colour)
    before = rotation_angle_deg(init.cameras()[0][:, :3, :3], c2w[:, :3, :3])
    after = rotation_angle_deg(result.c2w[:, :3, :3], c2w[:, :3, :3])
    assert torch.isfinite(result.loss).all() and (after < before - 3.0).all()
