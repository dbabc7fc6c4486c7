# One entry point. `make demo` and `make test` create or reuse .venv and install what they need.
#
# torch: by default the CPU build `torch==2.13.0` is installed first (a local wheel on the
# project's CI machines). GPU users: `make install TORCH=torch` (the normal CUDA build).
# CPU users elsewhere: `make install TORCH_INDEX=<PyTorch's CPU wheel index URL>`.
VENV        ?= .venv
PYTHON      ?= python3
TORCH       ?= torch==2.13.0
TORCH_INDEX ?=
EXTRAS      ?= opensmile,video,face,demo,onnx,test
PY  := $(VENV)/bin/python
MER := $(VENV)/bin/mer

.PHONY: install demo test bench bench-gpu clean-demo

$(VENV)/.installed: pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --quiet "$(TORCH)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(PY) -m pip install --quiet -e ".[$(EXTRAS)]"
	touch $@

install: $(VENV)/.installed

demo: install
	$(MER) demo --out demo

test: install
	$(VENV)/bin/python -m pytest -q

bench: install
	$(VENV)/bin/python bench/run_all.py

# one CUDA GPU, < 8 min on one H200 (install the CUDA build: make bench-gpu TORCH=torch)
bench-gpu: install
	$(VENV)/bin/python bench/gpu.py
