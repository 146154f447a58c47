# Every target sets up what it needs. .venv is the development environment (made once, reused);
# wheel-test and test-min make fresh environments under build/envs with uv and test the built wheel.
PYTHON ?= python3
VENV   ?= .venv
ifeq ($(OS),Windows_NT)
BIN := Scripts
PATHSEP := ;
else
BIN := bin
PATHSEP := :
endif
PY     := $(VENV)/$(BIN)/python
UV     := $(VENV)/$(BIN)/uv
STAMP  := $(VENV)/.installed-$(shell cksum requirements-dev.txt | cut -d' ' -f1)
export VIRTUAL_ENV := $(abspath $(VENV))
export PATH := $(VIRTUAL_ENV)/$(BIN):$(PATH)

# Oldest and newest supported CPython for wheel-test / test-min: a local pyenv build when there is
# one, else a version request that uv resolves (or downloads).
PY_OLDEST ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.9.*/bin/python) 3.9)
PY_NEWEST ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.13.*/bin/python) 3.13)
ENVS      := build/envs
SRC       := python tests benches examples
PYTEST_ARGS ?=

# pytest exits 5 when it collected no tests: always an error here (an empty or unimportable
# tests/ must not pass), reported as such; ALLOW_NO_TESTS=1 accepts it for ad-hoc -k selections.
define pytest_rc
rc=0; $(1) || rc=$$?; \
if [ $$rc -eq 5 ]; then \
  echo "pytest collected no tests (exit 5)$(if $(filter 1,$(ALLOW_NO_TESTS)),: allowed by ALLOW_NO_TESTS=1,: failing)" >&2; \
  $(if $(filter 1,$(ALLOW_NO_TESTS)),rc=0;,) \
fi; exit $$rc
endef

# The suite against an installed package, not the source tree: run from a scratch directory with
# no ini file (pyproject's pythonpath=["python"] is off) and importlib imports, so `rankgrad` can
# only come from the environment's site-packages (tests/test_packaging.py checks it). The checkout
# root on PYTHONPATH lets spawned worker processes import `tests.<module>`, tests/ lets test
# modules import their shared helpers (conftest, gbdt_data); neither holds rankgrad;
# .ci holds the pytest_no_torch plugin. $(1): environment, $(2): environment variables,
# $(3): pytest options.
define pytest_installed
mkdir -p $(ENVS)/scratch && cd $(ENVS)/scratch || exit 1; \
$(call pytest_rc,env RANKGRAD_EXPECT_INSTALLED=1 PYTHONPATH="$(CURDIR)$(PATHSEP)$(CURDIR)/tests$(PATHSEP)$(CURDIR)/.ci" $(2) \
  $(abspath $(1))/$(BIN)/python -m pytest -c /dev/null --rootdir=$(CURDIR) -p no:cacheprovider \
  --import-mode=importlib -q -ra $(3) $(PYTEST_ARGS) $(CURDIR)/tests)
endef

.PHONY: all env build test test-rust test-python lint docs demo bench wheel sdist wheel-test \
	test-min clean

all: test

$(STAMP): requirements-dev.txt requirements-test.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q uv
	$(UV) pip install -p $(PY) -r requirements-dev.txt
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

env: $(STAMP)

# Builds rankgrad._core in place (python/rankgrad/_core.abi3.so); tests import from python/.
build: env
	$(VENV)/$(BIN)/maturin develop --release --skip-install

test-rust:
	cargo test --release

test-python: build
	@$(call pytest_rc,$(PY) -m pytest -q $(PYTEST_ARGS) tests)

test: test-rust test-python

# Fast checks first. stubtest keeps python/rankgrad/_core.pyi equal to the compiled bindings;
# tests/typing/user_api.py is a user's script that must type-check strictly (overloads, annotations).
lint: env
	cargo fmt --check
	ruff check $(SRC)
	ruff format --check $(SRC)
	cargo clippy --all-targets --features python -- -D warnings
	$(MAKE) build
	PYTHONPATH=python $(PY) -m mypy.stubtest rankgrad._core
	$(PY) -m mypy --strict tests/typing/user_api.py
	$(VENV)/$(BIN)/pyright --pythonpath $(PY) tests/typing/user_api.py

# API reference from the docstrings (mkdocstrings); --strict turns every warning into an error.
docs: env
	PYTHONPATH=python $(VENV)/$(BIN)/mkdocs build --strict --site-dir site

demo: build
	@for f in examples/demo*.py; do echo "== $$f"; PYTHONPATH=python $(PY) $$f || exit 1; done

bench: build
	@for f in benches/bench_*.py; do echo "== $$f"; PYTHONPATH=python $(PY) $$f || exit 1; done

# Linux: a manylinux2014 (manylinux_2_17) wheel, linked with zig against glibc 2.17 and checked
# by maturin's auditwheel policy; .ci/check_wheel.py re-checks tag, abi3, glibc symbols and that
# nothing but the package ships (the sdist target checks its contents the same way).
ifeq ($(shell uname -s),Linux)
WHEEL_FLAGS ?= --compatibility manylinux2014 --zig
endif
wheel: env
	rm -f dist/rankgrad-*.whl
	$(VENV)/$(BIN)/maturin build --release $(WHEEL_FLAGS) -o dist
	$(PY) .ci/check_wheel.py dist/rankgrad-*.whl
	touch dist/.built

sdist: env
	rm -f dist/rankgrad-*.tar.gz
	$(VENV)/$(BIN)/maturin sdist -o dist
	$(PY) .ci/check_wheel.py dist/rankgrad-*.tar.gz

dist/.built: $(wildcard src/*.rs src/*/*.rs python/rankgrad/*.py python/rankgrad/*/*.py) \
		python/rankgrad/_core.pyi Cargo.toml Cargo.lock pyproject.toml
	$(MAKE) wheel

# The wheel in fresh environments for the oldest and newest CPython: 3.9 with the numpy-only
# core plus LightGBM and XGBoost and no torch (the torch-free job: the GBDT and packaging tests
# must pass, modules that import torch are skipped by .ci/pytest_no_torch.py), 3.13 with everything. uv's cache shares the downloads between them and with test-min.
wheel-test: env dist/.built
	$(UV) venv -q --clear -p $(PY_OLDEST) $(ENVS)/oldest
	$(UV) pip install -q -p $(ENVS)/oldest/$(BIN)/python -r requirements-test.txt \
		"$$(ls dist/rankgrad-*.whl)[lightgbm,xgboost]"
	$(call pytest_installed,$(ENVS)/oldest,RANKGRAD_EXPECT_NO_TORCH=1,-p pytest_no_torch)
	$(UV) venv -q --clear -p $(PY_NEWEST) $(ENVS)/newest
	$(UV) pip install -q -p $(ENVS)/newest/$(BIN)/python -r requirements-test.txt \
		"$$(ls dist/rankgrad-*.whl)[all]"
	$(call pytest_installed,$(ENVS)/newest,,)

# The declared floors, exactly (requirements-min.txt, checked against pyproject.toml by
# tests/test_packaging.py), on the oldest CPython, with the built wheel.
test-min: env dist/.built
	$(UV) venv -q --clear -p $(PY_OLDEST) $(ENVS)/min
	$(UV) pip install -q -p $(ENVS)/min/$(BIN)/python -r requirements-test.txt \
		-r requirements-min.txt "$$(ls dist/rankgrad-*.whl)"
	$(call pytest_installed,$(ENVS)/min,RANKGRAD_EXPECT_MIN=1,)

clean:
	cargo clean
	rm -rf dist build site python/rankgrad/_core*.so
