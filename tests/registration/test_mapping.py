"""congeal.registration.mapping: warp fitting on a known warp, the pixel grid and its sampling."""
import torch
import torch.nn.functional as F

from congeal.registration.mapping import (MappingConfig, fit_warps, from_norm, identity_warp, pixel_centres, sample_field,
                                          to_norm)


def _toy(n=2, size=32, feat=16, amp=0.12, seed=0):
    """Render features = smooth random unit vectors; the image is the render pulled through a known warp."""
    g = torch.Generator().manual_seed(seed)
    render = F.normalize(F.interpolate(torch.randn(n, 8, 5, 5, generator=g), size=(feat, feat), mode="bicubic",
                                       align_corners=False), dim=1)

    def true_phi(u):
        return u + torch.stack([amp * torch.sin(2.0 * u[..., 1] + 0.5), amp * torch.cos(1.7 * u[..., 0])], -1)

    uf = to_norm(pixel_centres(feat), feat).expand(n, feat, feat, 2)
    image = F.normalize(F.grid_sample(render, true_phi(uf), align_corners=False), dim=1)
    us = to_norm(pixel_centres(size), size).expand(n, size, size, 2)
    yy, xx = us[..., 1], us[..., 0]
    disc = ((xx ** 2 + yy ** 2) < 0.65 ** 2).float()[:, None]
    image_mask = F.grid_sample(disc, true_phi(us), align_corners=False)
    return image, render, image_mask, disc, from_norm(true_phi(us), size)


def test_fit_warps_recovers_a_known_warp():
    image, render, mask, opacity, truth = _toy()
    warps = fit_warps(image, render, mask, opacity, MappingConfig(steps=150), progress=False)
    assert warps.shape == (2, 32, 32, 2)
    inside = mask[:, 0] > 0.5
    err = (warps - truth).norm(dim=-1)[inside]
    ident = (pixel_centres(32) - truth).norm(dim=-1)[inside]
    assert ident.median() > 1.5  # the warp to find is a real one (pixels)
    assert err.median() < 0.25 * ident.median()
    assert err.median() < 0.5


def test_fit_warps_is_per_image_and_identity_at_zero_steps():
    image, render, mask, opacity, _ = _toy(n=2)
    cfg = MappingConfig(steps=30)
    both = fit_warps(image, render, mask, opacity, cfg, progress=False)
    alone = fit_warps(image[1:], render[1:], mask[1:], opacity[1:], cfg, progress=False)
    assert torch.allclose(both[1], alone[0], atol=1e-4)
    ident = fit_warps(image, render, mask, opacity, MappingConfig(steps=0), progress=False)
    assert torch.allclose(ident, pixel_centres(32).expand(2, 32, 32, 2))


def test_pixel_grid_and_sampling():
    centres = pixel_centres(4)
    assert torch.equal(centres[1, 2], torch.tensor([2.5, 1.5]))  # (x, y) = (col + 0.5, row + 0.5)
    assert torch.equal(identity_warp(4), centres)
    assert torch.allclose(from_norm(to_norm(centres, 4), 4), centres)
    assert torch.allclose(to_norm(torch.tensor([[0.0, 4.0]]), 4), torch.tensor([[-1.0, 1.0]]))
    # sampling a field at its own pixel centres returns it
    field = torch.arange(4 * 4 * 2, dtype=torch.float32).reshape(4, 4, 2)
    assert torch.allclose(sample_field(field, centres.reshape(-1, 2)), field.reshape(-1, 2))
