# Two commands for a fresh machine: `make demo` and `make test`.
# Both create .venv (CPU torch 2.13.0) when it is missing. `make test` is the fast core suite (budget: 4 min on 2 idle
# cores); `make test-slow` the end-to-end and fault tests it leaves out (tests/conftest.py lists them); CI runs both.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO_OUT ?= demo-out

.PHONY: demo test test-slow test-split test-targets test-integration venv clean gpu-wheels env-threestudio-latest env-threestudio-pinned \
	test-integration-latest test-integration-pinned

# Side environments for the threestudio integration tests (README "Testing"): one with today's releases, one with
# threestudio's own pins. THREESTUDIO_ROOT names the threestudio checkout the tests import; the envs go under
# THREESTUDIO_ENVS/<side>. MVDREAM_SRC (optional) is where the `mvdream` package comes from (see the build script).
THREESTUDIO_ROOT ?=
THREESTUDIO_ENVS ?= build/threestudio-envs
# MVDREAM_PATH (optional): an MVDream checkout the integration targets put on PYTHONPATH (build the env with
# MVDREAM_SRC= then; this is how .ci/run uses the copy of ../shared/hosts/MVDream)
MVDREAM_PATH ?=
TS_ENV_FILES := scripts/threestudio-env/build.sh scripts/threestudio-env/constraints.txt setup.py
TS_ENV_VARS = THREESTUDIO_ROOT="$(THREESTUDIO_ROOT)" PYTHON="$(PYTHON)" \
	$(if $(filter undefined,$(origin MVDREAM_SRC)),,MVDREAM_SRC="$(MVDREAM_SRC)")
NEED_THREESTUDIO_ROOT = @test -n "$(THREESTUDIO_ROOT)" || \
	{ echo "error: set THREESTUDIO_ROOT=/path/to/threestudio (README \"Testing\")" >&2; exit 2; }
.SECONDARY: $(THREESTUDIO_ENVS)/latest/.installed $(THREESTUDIO_ENVS)/pinned/.installed

$(VENV)/.installed: setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip >/dev/null
	# CPU torch first, so no requirement below can pull a multi-GB CUDA build
	$(PY) -m pip install "torch==2.13.0"
	$(PY) -m pip install -e ".[test]"
	# open_clip ships the real CLIP BPE vocabulary; --no-deps keeps its torchvision requirement out
	$(PY) -m pip install --no-deps "open_clip_torch>=2.20"
	# nerfstudio's own data parser reads our transforms.json in the tests; --no-deps keeps its pinned CUDA-era stack
	# out (the modules its data parser imports are in the test extra)
	$(PY) -m pip install --no-deps "nerfstudio==1.1.5"
	touch $@

venv: $(VENV)/.installed

demo: venv
	$(PY) -m congeal demo --out $(DEMO_OUT)

# The core suite (tests/ less tests/integration, which needs a threestudio checkout), split in two by the `slow`
# marker: every core test is in exactly one of `test` and `test-slow` (`make test-split` checks it).
CORE_TESTS := tests --ignore=tests/integration
PYTEST_ARGS ?=

test: venv
	$(PY) -m pytest -q -m "not slow" $(PYTEST_ARGS) $(CORE_TESTS)

test-slow: venv
	$(PY) -m pytest -q -m slow $(PYTEST_ARGS) $(CORE_TESTS)

test-split: venv
	$(PY) scripts/ci/check_test_split.py

# Issue 14's accuracy targets on held-out benchmark collections (~10 min on 2 cores; spot sets need CONGEAL_SPOT_DIR).
test-targets: venv
	CONGEAL_TARGET_TESTS=1 $(PY) -m pytest -q tests/synthetic/test_registration_targets.py

# The packages a lent GPU machine lacks (it has PyTorch and transformers, no registry), as wheels for its Python 3.12,
# for scripts/gpu-check.sh (docs/performance.md "GPU"): the versions this venv tests with.
gpu-wheels: venv
	rm -rf .whl && mkdir -p .whl
	$(PY) -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
		--platform manylinux_2_17_x86_64 -d .whl \
		$$($(PY) -m pip list --format=freeze | grep -i -E '^(omegaconf|diffusers|importlib.metadata)==')
	ls .whl

# Needs THREESTUDIO_ROOT pointing at a threestudio checkout (see README "Testing").
test-integration: venv
	$(NEED_THREESTUDIO_ROOT)
	THREESTUDIO_ROOT="$(THREESTUDIO_ROOT)" $(PY) -m pytest -q -rs tests/integration

$(THREESTUDIO_ENVS)/%/.installed: scripts/threestudio-env/requirements-%.txt $(TS_ENV_FILES)
	$(NEED_THREESTUDIO_ROOT)
	$(TS_ENV_VARS) bash scripts/threestudio-env/build.sh $* $(THREESTUDIO_ENVS)/$*
	touch $@

env-threestudio-latest: $(THREESTUDIO_ENVS)/latest/.installed
env-threestudio-pinned: $(THREESTUDIO_ENVS)/pinned/.installed

# The whole integration suite (tests/integration) in one side environment
test-integration-latest test-integration-pinned: test-integration-%: $(THREESTUDIO_ENVS)/%/.installed
	$(NEED_THREESTUDIO_ROOT)
	THREESTUDIO_ROOT="$(THREESTUDIO_ROOT)" $(if $(MVDREAM_PATH),PYTHONPATH="$(MVDREAM_PATH)") \
		$(THREESTUDIO_ENVS)/$*/bin/python -m pytest -p no:cacheprovider -rfEs $(PYTEST_ARGS) tests/integration

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache $(THREESTUDIO_ENVS)
