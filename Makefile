# Two commands for a fresh machine: `make demo` and `make test`.
# Both create .venv (CPU torch 2.13.0) when it is missing.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO_OUT ?= demo-out

.PHONY: demo test test-integration venv clean

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

test: venv
	$(PY) -m pytest -q tests

# Needs THREESTUDIO_ROOT pointing at a threestudio checkout (see README "Testing").
test-integration: venv
	$(PY) -m pytest -q tests -m integration

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache
