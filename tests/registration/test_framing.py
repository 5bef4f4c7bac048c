"""Framing: bbox -> square + margin -> S×S, and exact working-frame cameras (explicit principal point)."""
import torch

from congeal.canonical.render import GridRenderer
from congeal.geometry.cameras import Cameras, c2w_from_spherical, get_rays
from congeal.io.crop import Crop
from congeal.registration.losses import binary_iou
from congeal.registration.framing import Boxes, bounding_boxes, camera_in_frame, crop_resize, render_in_frame, square_boxes
from helpers.canonicals import small_canonical


def test_bounding_and_square_boxes():
    opacity = torch.zeros(3, 20, 30, 1)
    opacity[0, 5:9, 10:22] = 1.0  # 12 wide, 4 high
    opacity[1, 0:20, 29:30] = 0.9  # touches the right and both horizontal borders
    boxes = bounding_boxes(opacity)
    assert boxes[0].tolist() == [10, 5, 22, 9]
    assert boxes[1].tolist() == [29, 0, 30, 20]
    assert boxes[2].tolist() == [0, 0, 30, 20]  # empty -> whole frame
    square = square_boxes(opacity, margin=0.1)
    assert torch.allclose(square.side[0], torch.tensor(12 * 1.2))
    assert torch.allclose(square.centre()[0], torch.tensor([16.0, 7.0]))
    # the photos' crops are made the same way (congeal.io.crop.Crop.from_bbox)
    crop = Crop.from_bbox(tuple(boxes[0].tolist()), size=64, margin=0.1)
    assert abs(crop.x0 - float(square.x0[0])) < 1e-5 and abs(crop.side - float(square.side[0])) < 1e-5


def test_crop_resize_identity_and_shift():
    torch.manual_seed(0)
    images = torch.rand(2, 3, 16, 16)
    full = Boxes(torch.zeros(2), torch.zeros(2), torch.full((2,), 16.0))
    assert torch.allclose(crop_resize(images, full, 16, supersample=1), images, atol=1e-6)
    shifted = Boxes(torch.tensor([4.0, 0.0]), torch.tensor([2.0, 0.0]), torch.tensor([8.0, 16.0]))
    out = crop_resize(images, shifted, 8, supersample=1)
    assert torch.allclose(out[0], images[0, :, 2:10, 4:12], atol=1e-6)
    outside = crop_resize(images, Boxes(torch.tensor([100.0]), torch.tensor([0.0]), torch.tensor([8.0])), 4)
    assert outside.abs().max() == 0  # zero padding outside the source


def test_explicit_centre_principal_matches_centred_rays():
    c2w = c2w_from_spherical(torch.tensor([10.0, 200.0]), torch.tensor([5.0, 40.0]), torch.tensor([3.0, 2.0]))
    fovy = torch.tensor([0.5, 0.9])
    origins, dirs = get_rays(Cameras(c2w, fovy, torch.full((2, 2), 12.0), 24, 24))
    ref_o, ref_d = get_rays(Cameras.centred(c2w, fovy, 24, 24))
    assert torch.allclose(dirs, ref_d, atol=1e-6) and torch.allclose(origins, ref_o)


def test_framed_render_equals_render_in_working_frame():
    """Cropping a render to its object == rendering the working-frame camera from camera_in_frame directly."""
    renderer = GridRenderer(small_canonical(), num_samples=32)
    c2w = c2w_from_spherical(torch.tensor([30.0, 120.0, 250.0]), torch.tensor([10.0, 35.0, -5.0]),
                             torch.tensor([2.5, 3.0, 2.2]))
    fovy = torch.deg2rad(torch.tensor([40.0, 28.0, 52.0]))
    full = Cameras.centred(c2w, fovy, 96, 96)
    out = renderer.render(full, 96, 96)
    boxes = square_boxes(out["opacity"], margin=0.1)
    framed = crop_resize(torch.cat([out["rgb"], out["opacity"]], -1).permute(0, 3, 1, 2), boxes, 32)
    working = camera_in_frame(full, boxes, 32)
    principal = working.principal
    direct = render_in_frame(renderer, working, 32)
    assert (framed[:, 3] - direct["opacity"][..., 0]).abs().mean() < 0.02
    assert (framed[:, :3] - direct["rgb"].permute(0, 3, 1, 2)).abs().mean() < 0.02
    assert (principal - 16).abs().max() > 0.5  # the object is off the origin's projection: a real test

    class RenderOnly:  # a renderer without render_rays: the protocol's render, principal point and all
        def render(self, *args):
            return renderer.render(*args)

    fallback = render_in_frame(RenderOnly(), working, 32)
    assert (fallback["opacity"] - direct["opacity"]).abs().mean() < 0.03


def test_a_stretched_render_is_the_render_of_the_stretched_canonical():
    stretch = (1.3, 0.8, 1 / (1.3 * 0.8))
    c2w = c2w_from_spherical(torch.tensor([35.0, 160.0]), torch.tensor([20.0, -10.0]), torch.tensor([2.6, 2.6]))
    cameras = Cameras.centred(c2w, torch.deg2rad(torch.tensor([45.0, 45.0])), 32, 32)
    rigid = GridRenderer(small_canonical(), num_samples=48)
    truth = render_in_frame(GridRenderer(small_canonical(stretch=stretch), num_samples=48), cameras, 32)
    plain = render_in_frame(rigid, cameras, 32)
    stretched = render_in_frame(rigid, cameras, 32, torch.tensor([stretch, stretch]))
    unit = render_in_frame(rigid, cameras, 32, torch.ones(2, 3))
    assert torch.allclose(unit["opacity"], plain["opacity"], atol=1e-5)

    def iou(a, b):
        return binary_iou(a["opacity"].permute(0, 3, 1, 2), b["opacity"].permute(0, 3, 1, 2))

    # measured: rigid IoU 0.80 / 0.77 with the stretched instance, stretched render 0.95 / 0.96 (the rest: the
    # instance's own 32³ bake)
    assert (iou(plain, truth) < 0.85).all()
    assert (iou(stretched, truth) > 0.93).all()
    assert (stretched["opacity"] - truth["opacity"]).abs().mean() < 0.01
    assert (stretched["rgb"] - truth["rgb"]).abs().mean() < 0.01
