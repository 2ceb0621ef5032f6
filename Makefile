# Two commands set up everything on a fresh machine: `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
# torch and torchvision come from the local disk; other pairs fail to import together.
TORCH := torch==2.14.1 torchvision==0.29.1
export HF_HUB_OFFLINE := 1

.PHONY: install demo test layers browser clean

install: $(STAMP)

$(PY):
	python3 -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e '.[ray,test]'
	touch $@

# Debian's chromium for the browser tests (Playwright drives it; no browser download).
browser:
	@command -v chromium >/dev/null || { $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q chromium; }

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

demo: $(STAMP)
	$(VENV)/bin/ctxsim demo --out demo_out

# The import layers of pyproject.toml ([tool.importlinter]); no import cycle between project modules.
layers: $(STAMP)
	$(PY) tools/check_layers.py

test: $(STAMP) browser layers
	$(PY) -m pytest

clean:
	rm -rf demo_out .pytest_cache
