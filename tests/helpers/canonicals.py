"""A small asymmetric, part-coloured canonical for the registration unit tests (built in memory, ~0.1 s)."""
import torch

from congeal.canonical.bake import canonical_from_sdf


def _box(p, centre, half):
    q = (p - torch.tensor(centre)).abs() - torch.tensor(half)
    return q.clamp_min(0).norm(dim=-1) + q.amax(-1).clamp_max(0)


def small_canonical(resolution: int = 32, stretch=(1.0, 1.0, 1.0)):
    """A bar with a ball on one end and a leg on the other: no rotational or mirror symmetry. `stretch`: another
    instance, stretched along the axes (x ↦ stretch·x)."""
    factor = torch.tensor(stretch)

    def sdf(p):
        p = p / factor
        bar = _box(p, (0.1, 0.0, 0.0), (0.45, 0.2, 0.15))
        ball = (p - torch.tensor([-0.35, 0.15, 0.25])).norm(dim=-1) - 0.2
        leg = _box(p, (0.4, -0.1, -0.3), (0.07, 0.07, 0.2))
        return torch.minimum(torch.minimum(bar, ball), leg)

    def colour(p):
        p = p / factor
        c = torch.empty_like(p)
        c[:] = torch.tensor([0.8, 0.3, 0.2])
        c[(p - torch.tensor([-0.35, 0.15, 0.25])).norm(dim=-1) < 0.25] = torch.tensor([0.2, 0.4, 0.9])
        c[p[:, 2] < -0.16] = torch.tensor([0.2, 0.8, 0.3])
        return c

    return canonical_from_sdf(sdf, colour, resolution=resolution)
