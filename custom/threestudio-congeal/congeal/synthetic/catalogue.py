"""The object families by name: `get_family("chair")`.

    get_family("creature"), get_family("chair"), get_family("teapot")     # procedural (congeal.synthetic.families)
    get_family("spot", mesh_dir="meshes/spot")                      # a real textured mesh (congeal.synthetic.spot)
"""
from typing import Optional

from congeal.common.errors import InputError
from congeal.common.paths import PathLike
from congeal.synthetic.chair import CHAIR
from congeal.synthetic.families import CREATURE, Family
from congeal.synthetic.spot import spot_family
from congeal.synthetic.teapot import TEAPOT

__all__ = ["FAMILY_NAMES", "get_family"]

FAMILY_NAMES = ("creature", "chair", "teapot", "spot")


def get_family(name: str, mesh_dir: Optional[PathLike] = None) -> Family:
    """The family called `name` (one of FAMILY_NAMES).

    Args:
        mesh_dir: for `spot`, the folder holding spot_triangulated.obj and spot_texture.png (default: the
            CONGEAL_SPOT_DIR environment variable; one of the two is needed).
    Raises:
        InputError: unknown name, or spot's files missing.
    """
    procedural = {"creature": CREATURE, "chair": CHAIR, "teapot": TEAPOT}
    if name in procedural:
        return procedural[name]
    if name == "spot":
        return spot_family(mesh_dir)
    raise InputError(None, f"unknown object family {name!r}", f"use one of {', '.join(FAMILY_NAMES)}")
