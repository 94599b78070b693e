# Set-up and the two main jobs. `make demo` and `make test` create .venv on first use.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# The CPU wheel of torch; an unpinned torch pulls a multi-GB CUDA build. On the project's
# machines pip finds torch==2.13.0's CPU wheel on local disk; elsewhere PyPI's Linux wheel is
# the CUDA build: `make TORCH_INDEX=https://download.pytorch.org/whl/cpu` takes the CPU one.
TORCH  ?= torch==2.13.0
TORCH_INDEX ?=
STAMP  := $(VENV)/.installed

.PHONY: demo test test-all lint bench gpu-wheels clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

# demo-output/ is the demo's own folder: a rerun replaces what the last one wrote there
demo: $(STAMP)  ## translate a real-looking scene end to end with the bundled model
	$(BIN)/rsgan demo --overwrite

test: $(STAMP)  ## the test suite CI runs (slow fuzzing/training tests excluded)
	$(BIN)/python -m pytest -m "not slow" -q

test-all: $(STAMP)  ## everything, slow tests included
	$(BIN)/python -m pytest -q

lint: $(STAMP)  ## ruff over everything, mypy over the package
	$(BIN)/ruff check rsgan tests benchmarks examples
	$(BIN)/python -m mypy rsgan

bench: $(STAMP)  ## every benchmark; `make bench BENCH_ARGS=--quick` for a short run
	$(BIN)/python benchmarks/run_all.py $(BENCH_ARGS)

# rasterio, pyproj, shapely and geopandas (~48 MB; not pyogrio, 33 MB more, which only
# reads and writes vector files) as CPython 3.12 wheels in .whl/, for a GPU machine that
# has CUDA torch but none of these and no network (benchmarks/gpu_check.sh installs them)
GPU_PY ?= 3.12
gpu-wheels:
	$(PYTHON) -m pip download -q --no-deps --only-binary=:all: --python-version $(GPU_PY) \
	  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 \
	  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
	  rasterio==1.4.4 affine cligj click-plugins pyproj==3.7.2 shapely==2.2.0 geopandas==1.2.0

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis
