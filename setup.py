"""Installs the congeal core (and the `congeal` command) from custom/threestudio-congeal/congeal.

The same files serve threestudio (which loads custom/threestudio-congeal itself) and plain Python.
torch is deliberately *not* pinned: a loose lower bound never makes pip replace a user's CUDA build.
"""
from setuptools import find_packages, setup

EXTENSION_DIR = "custom/threestudio-congeal"

setup(
    name="threestudio-congeal",
    version="0.1.0",
    description="3D Congealing (ECCV 2024) as a threestudio extension: align unposed photos in one canonical 3D space",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.9",
    # `congeal` (the core) and `threestudio_congeal` (the threestudio adapters, the extension folder itself) come
    # from the same files; loading the extension both ways in one process is safe (see its registry.py)
    package_dir={"": EXTENSION_DIR, "threestudio_congeal": EXTENSION_DIR},
    packages=find_packages(where=EXTENSION_DIR, include=["congeal", "congeal.*"])
    + ["threestudio_congeal"]
    + [f"threestudio_congeal.{sub}" for sub in ("guidance", "prompt_processors", "data", "systems")],
    install_requires=[
        "torch>=1.13",
        "numpy",
        "pillow>=9.1",
        "safetensors>=0.3",
        "omegaconf>=2.3",
        "tqdm",
        # tensor shapes in signatures (Float[Tensor, "B H W 3"]); threestudio depends on it too
        "jaxtyping>=0.2.19",
    ],
    extras_require={
        # DINOv2 features and SAM masks (transformers >= 4.31 has Dinov2Model; older versions fall back to timm)
        "dinov2": ["transformers>=4.28"],
        "sam": ["transformers>=4.29"],
        # textual inversion against a diffusers Stable-Diffusion-format model
        "ti": ["transformers>=4.28", "diffusers>=0.14"],
        # canonical shapes from triangle meshes
        "mesh": ["trimesh>=3.20"],
        # `congeal view`: nerfstudio's viewer library (3D scene in the browser, static HTML export)
        # viser < 1.1.1 serves files outside its root to `GET /../..` (README "Security")
        "viewer": ["viser>=1.1.1", "trimesh>=3.20"],
        "test": [
            "pytest>=7",
            # checks every annotation (jaxtyping shapes included) at test time; see pytest.ini
            "beartype>=0.16",
            "transformers>=4.28",
            "diffusers>=0.14",
            "trimesh>=3.20",
            "scipy",
            "ftfy",
            "regex",
            # what nerfstudio's data parser imports (nerfstudio itself is installed --no-deps by the Makefile)
            "opencv-python-headless",
            "viser>=1.1.1",
            # fuzz tests of the readers of outside data (tests/fuzz)
            "hypothesis>=6.100",
            # a real COLMAP reader for `congeal export --format colmap` (tests/apps/export)
            "pycolmap>=3.10",
            "tensorboard",
            "rich",
        ],
    },
    entry_points={"console_scripts": ["congeal=congeal.cli:main"]},
)
