# Two commands do everything on a fresh machine:
#   make demo   set up, then run the bundled sample picture through the whole local stack
#               (S3 server, worker under RunPod's local API, callback server on SQLite)
#   make test   set up, then lint and run the test suite (PostgreSQL tests when Debian's server is installed)
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TOOLS_STAMP := tools/node_modules/.installed

.PHONY: setup demo demo-cli test lint check clean bench

setup: $(STAMP) $(TOOLS_STAMP)

# torch: pinned first so nothing pulls a CUDA build; on this machine pip's wheel cache holds the
# CPU build. GPU images install the cu128 build in the Dockerfile instead.
$(STAMP): Makefile requirements.txt requirements-dev.txt requirements-gpu.txt requirements-gpu-nodeps.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -r requirements-dev.txt -r requirements-gpu.txt
	$(BIN)/pip install -q --no-deps -r requirements-gpu-nodeps.txt
	touch $(STAMP)

# The Khronos glTF validator (npm, pinned by tools/package-lock.json) that the GLB tests run.
# Without npm the tests that need it skip (they say so); CI installs Node.js (.ci/run).
$(TOOLS_STAMP): tools/package.json tools/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
		npm ci --prefix tools --no-audit --no-fund --loglevel=error && touch $@; \
	else echo "npm absent: the glTF validator tests will be skipped"; fi

demo: $(STAMP)
	$(BIN)/python -m stack --out demo-output

# The library alone: no services, the meshes written to demo-output/demo/.
demo-cli: $(STAMP)
	$(BIN)/python -m orfeas generate orfeas/samples/emblem.png --out demo-output --formats glb,stl,obj,ply,3mf --job-id demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: $(STAMP) $(TOOLS_STAMP) lint
	bash scripts/test.sh

check: test

bench: $(STAMP)
	$(BIN)/python bench/decimate.py
	$(BIN)/python bench/pipeline.py

clean:
	rm -rf $(VENV) demo-output output .pytest_cache .ruff_cache tools/node_modules
