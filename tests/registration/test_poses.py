"""congeal.registration.poses: the silhouette target of the rigid and stretched refinement phases."""
import torch

from congeal.registration.poses import binary_at


def test_the_rigid_phases_target_is_binary_at_the_refinement_resolution_whatever_the_working_size():
    # a 224 px working mask pooled to the 64 px refinement used to be a fractional target in every phase (the paper
    # preset); the rigid phases now see each refinement pixel's covered fraction thresholded at 0.5
    cover = torch.zeros(1, 1, 4, 4)
    cover[0, 0, :2, :2] = torch.tensor([[1.0, 0.0], [0.0, 0.0]])  # 0.25 of the top-left refinement pixel
    cover[0, 0, :2, 2:] = torch.tensor([[1.0, 1.0], [0.0, 0.0]])  # 0.5
    cover[0, 0, 2:, :2] = torch.tensor([[1.0, 1.0], [1.0, 0.0]])  # 0.75
    cover[0, 0, 2:, 2:] = 1.0
    assert binary_at(cover, 2)[0, 0].tolist() == [[0.0, 1.0], [1.0, 1.0]]
    # at the working size a binary mask is its own target (the fast preset: bit for bit what it was)
    mask = (torch.rand(3, 1, 64, 64, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    assert torch.equal(binary_at(mask, 64), mask)
