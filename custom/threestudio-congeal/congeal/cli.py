"""The `congeal` command: one subcommand per module in congeal/commands/.

    congeal --help
    congeal check photos/ --preview sheet.png

`COMMANDS` below is the one registry: subcommand name -> (module in congeal.commands, one-line help). Each command
module defines `add_arguments(parser)` and `run(args) -> int`; it is imported only when its command runs, so
`congeal --help` stays fast.
"""
import argparse
import importlib
import sys
from typing import List, Optional

from congeal.common.errors import InputError

# subcommand name -> (module in congeal.commands, one-line help)
COMMANDS = {
    "check": ("check", "check an image collection (sizes, masks) and optionally write a contact sheet"),
    "synth": ("synth", "write a synthetic collection with ground truth (canonical, RGBA photos, keypoints)"),
    "register": ("register", "estimate every photo's camera (and coordinate map) against a canonical shape"),
    "correspond": ("correspond", "transfer points between two registered photos through the canonical space"),
    "eval-synthetic": ("eval_synthetic", "score a registration run against a synthetic ground truth"),
    "invert": ("invert", "textual inversion: learn a token embedding describing the photos"),
    "eval-spair": ("eval_spair", "SPair-71k keypoint transfer (PCK@0.1)"),
    "eval-navi": ("eval_navi", "NAVI in-the-wild pose error"),
    "doctor": ("doctor", "check this machine's set-up for a congealing run and say how to fix what is missing"),
    "bench": ("bench", "time and measure registration at real model sizes (random weights)"),
    "propagate": ("propagate", "carry labels (points, polygons, masks) of some photos to every registered photo"),
    "edit": ("edit", "pose-aware edits: a decal placed on one photo, or a canonical-space texture, on every photo"),
    "view": ("view", "3D viewer of a run (viser): shape, cameras with photos, click-to-correspond; --export HTML"),
    "export": ("export", "a run for other tools: COLMAP model, GLB scene, mesh (OBJ/PLY/GLB), nerfstudio with masks"),
    "bench-sets": ("bench_sets", "write registration benchmark sets (families × framings × deformation) and score "
                                 "registration on them"),
    "demo": ("demo", "run the main job on a bundled example (what `make demo` runs)"),
}


def _load(module_name: str):
    return importlib.import_module(f"congeal.commands.{module_name}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="congeal", description="3D Congealing: align unposed photos in 3D.")
    from congeal import __version__

    parser.add_argument("--version", action="version", version=f"congeal {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not argv or argv[0] not in COMMANDS:
        parser.parse_args(argv or ["--help"])  # prints help / errors and exits
        return 2
    name, rest = argv[0], argv[1:]
    module_name, help_text = COMMANDS[name]
    module = _load(module_name)
    command_parser = argparse.ArgumentParser(prog=f"congeal {name}", description=help_text)
    module.add_arguments(command_parser)
    args = command_parser.parse_args(rest)
    try:
        return int(module.run(args) or 0)
    except InputError as error:
        print(f"congeal {name}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
