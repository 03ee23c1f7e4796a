# Set-up and checks. Every target installs what it needs first, and never replaces an installed torch:
# without one it installs torch==$(TORCH_VERSION) (the CPU build on this project's machines).
PYTHON ?= python3
TORCH_VERSION ?= 2.13.0
PIP := $(PYTHON) -m pip

.PHONY: install demo test test-slow

DEMO_ARGS ?= --quick

install:
	@$(PYTHON) -c "import torch" 2>/dev/null || $(PIP) install "torch==$(TORCH_VERSION)"
	@mkdir -p build && $(PYTHON) -c "import torch; print('torch==' + torch.__version__.split('+')[0])" > build/torch-constraint.txt
	$(PIP) install -q -c build/torch-constraint.txt "setuptools>=64" wheel ninja
	$(PIP) install -q -c build/torch-constraint.txt --no-build-isolation -e ".[test]"
	# fastMRI is the test-only reference for metrics, masks and VarNet; its declared deps would pull torchvision.
	$(PIP) install -q --no-deps "fastmri==0.3.0"

demo: install
	$(PYTHON) -m mbdlfast demo --out demo_out $(DEMO_ARGS)

test: install
	$(PYTHON) -m pytest -q

test-slow: install
	$(PYTHON) -m pytest -q -m slow
