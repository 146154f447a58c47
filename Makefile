# One environment, made once and reused: .venv (torch from PyPI is large; pip's cache does the rest).
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cksum requirements-dev.txt | cut -d' ' -f1)
export VIRTUAL_ENV := $(abspath $(VENV))
export PATH := $(VIRTUAL_ENV)/bin:$(PATH)

.PHONY: all env build test test-rust test-python demo bench wheel clean

all: test

$(STAMP): requirements-dev.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -r requirements-dev.txt
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

env: $(STAMP)

# Builds rankgrad._core in place (python/rankgrad/_core.abi3.so); tests import from python/.
build: env
	$(VENV)/bin/maturin develop --release --skip-install

test-rust:
	cargo test --release

test-python: build
	$(PY) -m pytest -q tests

test: test-rust test-python

demo: build
	@for f in examples/demo*.py; do echo "== $$f"; PYTHONPATH=python $(PY) $$f || exit 1; done

bench: build
	@for f in benches/bench_*.py; do echo "== $$f"; PYTHONPATH=python $(PY) $$f || exit 1; done

wheel: env
	$(VENV)/bin/maturin build --release -o dist

clean:
	cargo clean
	rm -rf dist python/rankgrad/_core*.so
