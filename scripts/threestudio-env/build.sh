#!/usr/bin/env bash
# Build a side environment for the threestudio integration tests (CPU), from this repository's own files.
#
#   scripts/threestudio-env/build.sh SIDE ENV_DIR
#     SIDE     latest (today's releases) | pinned (threestudio's requirements.txt pins)
#     ENV_DIR  the virtual environment to create or update
#   environment:
#     THREESTUDIO_ROOT  a threestudio checkout (checked, never written; its commit is recorded in ENV_DIR/versions.txt)
#     MVDREAM_SRC       what `pip install` gets the `mvdream` package from (threestudio-mvdream imports it): a local
#                       checkout or a pip URL; default: the MVDream repository at the commit the tests were run with;
#                       empty: skip it (the MVDream tests then skip, with that reason)
#     PYTHON            the interpreter the venv is made from (default python3)
#
# Usually run through `make env-threestudio-latest` / `make env-threestudio-pinned` (see the README, "Testing").
# Nothing from threestudio is copied: the tests import it from THREESTUDIO_ROOT.
set -euo pipefail

usage() { echo "usage: THREESTUDIO_ROOT=/path/to/threestudio $0 latest|pinned ENV_DIR" >&2; exit 2; }
[ $# -eq 2 ] || usage
SIDE=$1
ENV_DIR=$2
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
REQUIREMENTS="$HERE/requirements-$SIDE.txt"
CONSTRAINTS="$HERE/constraints.txt"
PYTHON=${PYTHON:-python3}
MVDREAM_SRC=${MVDREAM_SRC-git+https://github.com/bytedance/MVDream@618f84476c88e04adaf588133be2830142b9956d}

[ -f "$REQUIREMENTS" ] || { echo "error: no $REQUIREMENTS (SIDE must be latest or pinned)" >&2; usage; }
if [ -z "${THREESTUDIO_ROOT:-}" ] || [ ! -f "$THREESTUDIO_ROOT/launch.py" ] || [ ! -d "$THREESTUDIO_ROOT/threestudio" ]; then
  echo "error: THREESTUDIO_ROOT='${THREESTUDIO_ROOT:-}' is not a threestudio checkout (no launch.py / threestudio/);" \
       "clone https://github.com/threestudio-project/threestudio and pass THREESTUDIO_ROOT=/path/to/it" >&2
  exit 2
fi
THREESTUDIO_ROOT=$(cd "$THREESTUDIO_ROOT" && pwd)
[ -d "$THREESTUDIO_ROOT/custom/threestudio-mvdream" ] || echo "note: $THREESTUDIO_ROOT/custom/threestudio-mvdream is" \
  "missing: the MVDream integration tests will skip (clone DSaurus/threestudio-mvdream there to run them)" >&2

# 1. the venv, CPU torch first (the constraint keeps every later step on it)
[ -x "$ENV_DIR/bin/python" ] || "$PYTHON" -m venv "$ENV_DIR"
PIP=("$ENV_DIR/bin/python" -m pip)
"${PIP[@]}" install -q --upgrade pip
"${PIP[@]}" install -q -c "$CONSTRAINTS" torch

# 2. threestudio's requirements for this side and this repository (core only: the test runner is in the
#    requirements file), resolved together so no later install can move a pin
"${PIP[@]}" install -q -c "$CONSTRAINTS" "setuptools<81" -r "$REQUIREMENTS" -e "$REPO"

# 3. packages whose declared requirements would pull torchvision (and with it a CUDA torch): --no-deps.
#    open_clip ships the real CLIP BPE vocabulary the tiny tokenizers are built from; mvdream imports only what
#    step 2 installed.
"${PIP[@]}" install -q -c "$CONSTRAINTS" --no-deps "open_clip_torch>=2.20"
if [ -n "$MVDREAM_SRC" ]; then
  if [ -d "$MVDREAM_SRC" ]; then
    "${PIP[@]}" install -q -c "$CONSTRAINTS" --no-deps -e "$MVDREAM_SRC"
  else
    "${PIP[@]}" install -q -c "$CONSTRAINTS" --no-deps "$MVDREAM_SRC"
  fi
fi

# 4. check what was asked for is what was installed, and record it
"$ENV_DIR/bin/python" - "$SIDE" <<'PY'
import importlib.metadata as md
import importlib.util
import sys

side = sys.argv[1]
version = lambda name: md.version(name)
problems = []
if importlib.util.find_spec("torchvision") is not None:
    problems.append("torchvision is installed (it drags in a CUDA torch; nothing here needs it)")
if side == "pinned":
    want = {"lightning": "2.0.0", "pytorch-lightning": "2.0.0", "transformers": "4.28.1", "omegaconf": "2.3.0",
            "nerfacc": "0.5.2"}
    problems += [f"{name} is {version(name)}, the pin is {pin}" for name, pin in want.items() if version(name) != pin]
    if tuple(int(x) for x in version("diffusers").split(".")[:2]) >= (0, 20):
        problems.append(f"diffusers is {version('diffusers')}, the pin is <0.20")
for module in ("torch", "pytorch_lightning", "diffusers", "transformers", "omegaconf", "nerfacc", "wandb", "igl"):
    try:
        __import__(module)
    except Exception as error:  # an import that fails here fails every test later: name it now
        problems.append(f"`import {module}` fails: {type(error).__name__}: {error}")
if problems:
    sys.exit("threestudio-env (" + side + "): " + "; ".join(problems))
PY
{
  echo "# side: $SIDE; threestudio: $THREESTUDIO_ROOT at $(git -C "$THREESTUDIO_ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')"
  "${PIP[@]}" freeze
} > "$ENV_DIR/versions.txt"
grep -iE '^(torch|pytorch-lightning|lightning|diffusers|transformers|huggingface.hub|accelerate|omegaconf|nerfacc|numpy)==' \
  "$ENV_DIR/versions.txt" | tr '\n' ' '
echo
echo "threestudio-env: $SIDE ready in $ENV_DIR (all versions: $ENV_DIR/versions.txt)"
