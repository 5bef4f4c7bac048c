"""Object families for synthetic collections: what a photo shows, its named keypoints, and how instances vary.

    family = get_family("chair")                              # congeal.synthetic.catalogue
    subject = family.mean()                                   # the canonical instance
    other = family.deformed(np.random.default_rng(0), 0.3)    # one cross-instance variant, part sizes ±30 %
    canonical = subject.bake(64); subject.keypoints(); subject.normals(points)

Families (congeal.synthetic.catalogue): `creature` (here, from congeal.synthetic.generator's parts), `chair`
(congeal.synthetic.chair), `teapot` (congeal.synthetic.teapot) are procedural, part-coloured SDFs with a
cross-instance deformation whose strength s scales every range (s = 0.2: part sizes ±20 %, colour jitter σ 0.05;
s = 0.3: ±30 %, σ 0.075); `spot` is a real textured mesh (congeal.synthetic.spot), same-instance only, built from
a mesh file that is not part of the repository. Every family's canonical frame is threestudio's: z up, the object's front along +x, inside a
radius-1 box. Each family says in `symmetry` which poses its colours can and cannot tell apart.
"""
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Protocol, Sequence, Tuple, Union, runtime_checkable

import numpy as np
from jaxtyping import Float
from torch import Tensor

from congeal.canonical.grid import Canonical
from congeal.common.errors import InputError
from congeal.synthetic.generator import (KEYPOINT_NAMES, Part, _normals, _surface_exits, bake_creature, creature_parts,
                                         creature_sdf, keypoints_of)

__all__ = ["Subject", "PartSubject", "Family", "Variation", "surface_keypoints", "CREATURE"]


@runtime_checkable
class Subject(Protocol):
    """One object instance that a photo shows (the canonical one or a deformed one)."""

    def bake(self, resolution: int) -> Canonical:
        """The instance on a radius-1 grid of `resolution`³ cells."""
        ...

    def normals(self, points: Float[Tensor, "N 3"]) -> Float[Tensor, "N 3"]:
        """Unit outward surface normals at points on (or near) the surface, for shading and visibility."""
        ...

    def keypoints(self) -> Dict[str, np.ndarray]:
        """Named surface points {name: [3]} (the same anatomical point on every instance of the family)."""
        ...


@dataclass
class Variation:
    """The random factors of one deformed instance of strength s; the identity for the mean instance (rng None)."""

    rng: Optional[np.random.Generator]
    strength: float

    def scale(self, relative: float = 1.0) -> float:
        """A size factor U(1 ± relative·s)."""
        if self.rng is None:
            return 1.0
        spread = relative * self.strength
        return float(self.rng.uniform(1.0 - spread, 1.0 + spread))

    def shift(self, relative: float, size: int) -> np.ndarray:
        """An offset N(0, relative·s) per component, [size]."""
        if self.rng is None:
            return np.zeros(size)
        return self.rng.normal(0.0, relative * self.strength, size)

    def colour(self, colour: Tuple[float, float, float]) -> Tuple[float, float, float]:
        """The colour moved by N(0, 0.25·s) per channel (σ 0.05 at s = 0.2, like the creature), clipped to [0,1]."""
        if self.rng is None:
            return colour
        moved = np.clip(np.asarray(colour) + self.rng.normal(0.0, 0.25 * self.strength, 3), 0.0, 1.0)
        return (float(moved[0]), float(moved[1]), float(moved[2]))


Point = Union[np.ndarray, Sequence[float]]


def surface_keypoints(parts: List[Part], anchors: Dict[str, Tuple[Point, Point]]) -> Dict[str, np.ndarray]:
    """Named surface points of a part union: {name: (start inside the object, direction)} -> {name: [3]}, each
    where its ray first leaves the surface (as the creature's keypoints are found)."""
    names = list(anchors)
    starts = np.array([anchors[name][0] for name in names], dtype=np.float64)
    directions = np.array([anchors[name][1] for name in names], dtype=np.float64)
    exits = _surface_exits(creature_sdf(parts), starts, directions)
    return {name: exits[k] for k, name in enumerate(names)}


@dataclass(frozen=True)
class PartSubject:
    """A smooth union of coloured SDF parts (`congeal.synthetic.generator.Part`) with its keypoint rule."""

    parts: Tuple[Part, ...]
    keypoint_rule: Callable[[List[Part]], Dict[str, np.ndarray]] = field(compare=False)

    def bake(self, resolution: int) -> Canonical:
        return bake_creature(list(self.parts), resolution)

    def normals(self, points: Float[Tensor, "N 3"]) -> Float[Tensor, "N 3"]:
        return _normals(creature_sdf(list(self.parts)), points)

    def keypoints(self) -> Dict[str, np.ndarray]:
        return self.keypoint_rule(list(self.parts))


@dataclass(frozen=True)
class Family:
    """A kind of object: its canonical instance, its cross-instance variation and its keypoints."""

    name: str
    keypoint_names: Tuple[str, ...]
    description: str
    symmetry: str
    """Which views colour features cannot tell apart (written into ground_truth.json)."""
    mean: Callable[[], Subject] = field(compare=False)
    """The canonical (undeformed) instance."""
    deform: Optional[Callable[[np.random.Generator, float], Subject]] = field(default=None, compare=False)
    """(rng, strength) -> one deformed instance; None: the family has no cross-instance mode."""

    def deformed(self, rng: np.random.Generator, strength: float) -> Subject:
        if self.deform is None:
            raise InputError(None, f"the {self.name} family has no cross-instance variation",
                             "use mode 'same' for it")
        return self.deform(rng, strength)


CREATURE = Family(
    name="creature",
    keypoint_names=tuple(KEYPOINT_NAMES),
    description="body, neck, head, snout, one horn on its left, a tail bending left, four legs; every part its own "
                "colour",
    symmetry="none: the horn and the tail break the left-right mirror symmetry, every leg has its own colour",
    mean=lambda: PartSubject(tuple(creature_parts()), keypoints_of),
    deform=lambda rng, strength: PartSubject(tuple(creature_parts(rng, strength)), keypoints_of),
)
