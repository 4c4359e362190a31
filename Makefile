# Tessera developer entry points. `make install` is the shared, idempotent set-up step.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test lint protos wheel wheelhouse images bundle clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# The CPU build of torch first, so nothing later pulls a CUDA build.
	$(BIN)/python -m pip install --quiet "torch==2.13.0"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo: install
	$(BIN)/tessera demo --workdir demo-work --report demo-work/report.json

lint: install
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/mypy common privacy client_app server serving gui tessera scripts

# Two passes: every test not marked serial, a test file per worker on two workers (most of
# a real-process test's time is waiting on its processes), then the serial ones alone. Files
# go to the workers in collection order, which tests/conftest.py sets to longest first
# (xdist would otherwise hand out the files with the most tests first, the longest last).
test: install lint
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -q -rs --durations=15 \
		-n 2 --dist loadfile --no-loadscope-reorder -m "not serial"
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -q -rs --durations=10 -m serial

protos: install
	$(BIN)/python scripts/gen_protos.py

# The installable wheel (dist/tessera-VERSION-py3-none-any.whl); nothing is downloaded.
wheel: install
	rm -rf build
	$(BIN)/python -m pip wheel --no-deps --no-build-isolation --quiet --wheel-dir dist .

# Every wheel the container images install (from the same index as `make install`), then
# the coordinator and site images, built offline from it (packaging/docker/).
CONTAINER_ENGINE ?= docker
VERSION = $(shell $(BIN)/python -c "import tessera; print(tessera.__version__)")
WHEELHOUSE := packaging/docker/wheelhouse

wheelhouse: wheel
	$(BIN)/python -m pip wheel --quiet --wheel-dir $(WHEELHOUSE) "torch==2.13.0" \
		dist/tessera-$(VERSION)-py3-none-any.whl

# The desktop app as a PyInstaller one-folder bundle: dist/desktop/tessera-site/ (PyInstaller
# is in the dev extra; the same build runs in the bundle's smoke test when it is out of date).
bundle: install
	$(BIN)/python packaging/desktop/build.py

images: wheelhouse
	$(CONTAINER_ENGINE) build --target coordinator -t tessera-coordinator:$(VERSION) -t tessera-coordinator:latest packaging/docker
	$(CONTAINER_ENGINE) build --target site -t tessera-site:$(VERSION) -t tessera-site:latest packaging/docker

clean:
	rm -rf $(VENV) demo-work build dist *.egg-info $(WHEELHOUSE) .pytest_cache .ruff_cache .mypy_cache
