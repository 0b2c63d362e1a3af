# Land-cover plugin: every target installs what it needs first and stops at the first failure.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

SYSTEM_PYTHON ?= /usr/bin/python3
VENV := .venv
PYTHON := $(VENV)/bin/python
APT_PACKAGES := qgis python3-qgis qgis-providers python3-rasterio python3-venv python3-pip xvfb
QGIS_PROFILE ?= $(HOME)/.local/share/QGIS/QGIS3/profiles/default
export QT_QPA_PLATFORM ?= offscreen
export LANDCOVER_PYTHON ?= $(abspath $(PYTHON))

.PHONY: help apt setup lint test test-all demo bench gpu-check zip install screenshots docs clean

help:
	@echo "make demo        run the whole workflow headless on the bundled data (installs first)"
	@echo "make test        install, then lint (ruff) and run the test suite"
	@echo "make lint        ruff over the whole repository (ruff.toml)"
	@echo "make bench       benchmarks -> bench/results.json and bench/RESULTS.md (about an hour)"
	@echo "make gpu-check   GPU check (torch only, < 5 min): training AMP/float32/bare, classify on CUDA"
	@echo "make zip         build dist/landcover_plugin.zip to install in QGIS"
	@echo "make install     copy the plugin into your QGIS profile ($(QGIS_PROFILE))"
	@echo "make screenshots real QGIS screenshots for the README (under Xvfb)"

# Debian packages: installed only when missing (root, or through sudo).
apt:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "Installing Debian packages:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update; \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y --no-install-recommends $$missing; \
	fi

# The venv sees QGIS and Debian's rasterio; numpy stays at the system's version (numpy 2 breaks them).
$(VENV)/.installed: requirements.txt landcover_plugin/engine_requirements.txt | apt
	[ -x $(PYTHON) ] || $(SYSTEM_PYTHON) -m venv --system-site-packages $(VENV)
	echo "numpy==$$($(SYSTEM_PYTHON) -c 'import numpy; print(numpy.__version__)')" > $(VENV)/constraints.txt
	$(PYTHON) -m pip install --disable-pip-version-check -c $(VENV)/constraints.txt -r requirements.txt
	$(PYTHON) -c "import numpy, rasterio, torch, onnxruntime, qgis.core; print('environment ok: numpy', numpy.__version__)"
	touch $@

setup: apt $(VENV)/.installed

lint: setup
	$(PYTHON) -m ruff check .

test: setup lint
	$(PYTHON) -m pytest tests

test-all: setup
	$(PYTHON) -m pytest tests -m ""

demo: setup
	$(PYTHON) -m scripts.demo

bench: setup
	$(PYTHON) -m bench.run

zip: setup
	$(PYTHON) scripts/package_plugin.py --zip dist/landcover_plugin.zip

install: setup
	$(PYTHON) scripts/package_plugin.py --dest "$(QGIS_PROFILE)/python/plugins"
	@echo "Installed. In QGIS: Plugins > Manage and Install Plugins > Installed > enable 'Land cover'."

screenshots: setup
	$(PYTHON) -m scripts.screenshots

clean:
	rm -rf dist build demo_output bench/work .pytest_cache

docs: setup
	$(PYTHON) -m scripts.algorithm_reference

# GPU check: torch and numpy only (no QGIS, rasterio or GDAL), under 5 minutes; prints one table for bench/RESULTS.md.
# On a bare GPU machine: make gpu-check GPU_PYTHON=python3 (any Python with a CUDA build of torch).
GPU_PYTHON ?= $(PYTHON)
gpu-check:
	$(GPU_PYTHON) -m bench.gpu_check
