# Two commands: `make run` (set up, then start Redis + API + one worker) and `make test`.
#   make run [PORT=8001]   .venv, the project, then `bragg up`: Redis, the API on 127.0.0.1:8000, a worker
#   make test              the same set-up plus the test extras and Debian's chromium, then the suite
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# pip with compact progress: each package collected or downloaded (with a percentage on a terminal),
# then what was installed and how long it took; pip's whole output only when it fails
PIP_INSTALL := $(PY) scripts/pip_install.py
PORT ?=
# Without a GPU take the CPU build of torch (on this kind of machine it lies on local disk);
# with one, let pip choose the CUDA build that satisfies the project's range.
TORCH_SPEC ?= $(if $(shell command -v nvidia-smi 2>/dev/null),torch>=2.3,torch==2.13.0)
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test

.PHONY: run test setup chromium bench clean

$(STAMP): pyproject.toml Makefile
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || { echo "could not create $(VENV): on Debian or \
	Ubuntu install python3-venv first (apt-get install python3-venv)" >&2; exit 1; }
	@echo "make: setting up $(VENV) (the first time takes a few minutes: PyTorch is a large download)"
	@echo "make: [1/3] upgrading pip"
	@$(PIP_INSTALL) --upgrade pip
	@echo "make: [2/3] installing $(TORCH_SPEC)"
	@$(PIP_INSTALL) "$(TORCH_SPEC)"
	@echo "make: [3/3] installing the project and its dependencies (editable, with the extra 'local')"
	@$(PIP_INSTALL) -e ".[local]"
	@touch $(STAMP)

$(TEST_STAMP): $(STAMP)
	@echo "make: installing the test tools into $(VENV)"
	@$(PIP_INSTALL) -e ".[local,test]"
	@touch $(TEST_STAMP)

setup: $(STAMP)

run: $(STAMP)
	exec $(VENV)/bin/bragg up $(if $(PORT),--port $(PORT))

# The browser test drives Debian's chromium: install it where it is missing and we may (root, apt).
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian's chromium for the browser test"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      --no-install-recommends chromium >/dev/null || echo "could not install chromium: the browser test will be skipped"; \
	  else echo "no chromium and no way to install it here (needs root and apt-get): the browser test will be skipped"; fi; }

test: $(TEST_STAMP) chromium
	$(PY) -m pytest

bench: $(STAMP)
	$(PY) -m bench.run

clean:
	rm -rf $(VENV) build *.egg-info
