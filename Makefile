# Set-up and checks. Every target installs what it needs first, and never replaces an installed torch:
# without one it installs torch==$(TORCH_VERSION) (the CPU build on this project's machines).
#
# `make install` runs once per Python environment and source state: it leaves a stamp in build/
# named after the environment, newer than pyproject.toml, setup.py and csrc/, so `make test` after
# `make demo` installs and builds nothing. The C++ extension is built with `setup.py build_ext
# --inplace` into build/temp.*: ninja recompiles only the sources that changed, and its [i/N]
# progress lines are shown (one line per compiled file).
PYTHON ?= python3
TORCH_VERSION ?= 2.13.0
PIP := $(PYTHON) -m pip
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

.PHONY: install demo test test-slow clean

DEMO_ARGS ?= --quick

ENVIRONMENT_ID := $(shell $(PYTHON) -c "import hashlib, sys; print(hashlib.sha1(sys.prefix.encode()).hexdigest()[:12])")
INSTALL_STAMP := build/installed-$(ENVIRONMENT_ID).stamp
BUILD_INPUTS := pyproject.toml setup.py $(shell find csrc -type f)
# A ninja line names the compiler and ends with the file it writes: show "[i/N] compile|link <file>".
NINJA_PROGRESS := sed -u -E 's@^(\[[0-9]+/[0-9]+\]) [^ ]*(c\+\+|g\+\+|nvcc)[^ ]* .* -c ([^ ]+) .*@\1 compile \3@; s@^(\[[0-9]+/[0-9]+\]) .* -o ([^ ]+\.so)( .*)?$$@\1 link \2@'

install: $(INSTALL_STAMP)

$(INSTALL_STAMP): $(BUILD_INPUTS)
	@$(PYTHON) -c "import torch" 2>/dev/null || $(PIP) install "torch==$(TORCH_VERSION)"
	@mkdir -p build && $(PYTHON) -c "import torch; print('torch==' + torch.__version__.split('+')[0])" > build/torch-constraint.txt
	$(PIP) install -q -c build/torch-constraint.txt "setuptools>=77" wheel ninja
	@# the package and its declared dependencies; the extension is built next, where its progress shows
	MBDLFAST_NO_EXTENSION=1 $(PIP) install -q -c build/torch-constraint.txt --no-build-isolation -e ".[test]"
	@# fastMRI is the test-only reference for metrics, masks and VarNet; its declared deps would pull
	@# torchvision, so it comes without them (what it imports is declared in the test extra).
	$(PIP) install -q -c build/torch-constraint.txt --no-deps "fastmri==0.3.0"
	@echo "building the C++ extensions mbdlfast._C, _C_cpu (and _C_cuda where torch has CUDA) with ninja, incrementally"
	$(PYTHON) setup.py -q build_ext --inplace 2>&1 | $(NINJA_PROGRESS)
	@touch $@

demo: install
	$(PYTHON) -m mbdlfast demo --out demo_out $(DEMO_ARGS)

# MBDLFAST_REQUIRE_REFERENCES: a reference library (SigPy, fastMRI, Triton) that is missing fails its
# tests instead of skipping them, so an incomplete install cannot pass as green.
test: install
	MBDLFAST_REQUIRE_REFERENCES=1 $(PYTHON) -m pytest -q

test-slow: install
	MBDLFAST_REQUIRE_REFERENCES=1 $(PYTHON) -m pytest -q -m slow

clean:
	rm -rf build mbdlfast/_C*.so
