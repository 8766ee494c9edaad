# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build of torch; override (e.g. TORCH_SPEC="torch>=2.2") on machines where a CUDA build is wanted.
TORCH_SPEC ?= torch==2.13.0

.PHONY: demo test lint install

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(VENV)/bin/sqdf-bbo demo

test: $(VENV)/.installed
	$(PY) -m pytest -q

lint: $(VENV)/.installed
	$(VENV)/bin/ruff format --check . && $(VENV)/bin/ruff check .

# On a machine with an NVIDIA GPU (~10 min): a CUDA torch in .venv-gpu, the cuda tests, the tilt
# benchmark on cuda, one digits frontier point, the test suite; report in runs/gpu-check/.
.PHONY: gpu-check
gpu-check:
	bash scripts/gpu_check.sh
