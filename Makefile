# One command each for a fresh machine: `make demo` runs the main job, `make test` the tests.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv demo test lint bench bench-scale clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first, pinned: pip then takes the local CPU build instead of a multi-GB CUDA wheel
	$(PY) -m pip install -q "torch==$$(grep -E '^torch==' constraints.txt | cut -d= -f3)"
	$(PY) -m pip install -q -c constraints.txt -e ".[train,ray,dev]"
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/sonify demo

test: $(STAMP)
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

bench: $(STAMP)
	for b in $(filter-out bench/scale.py,$(wildcard bench/*.py)); do $(PY) $$b || exit 1; done

# The scale run (bench/scale.py): SCALE=1 is the full 1M images x 2 VLMs against 1M and 4M pools
# (~25 GB of disk, about an hour of CPU); the default 0.05 takes a few minutes.
SCALE ?= 0.05
bench-scale: $(STAMP)
	$(PY) bench/scale.py --scale $(SCALE)

clean:
	rm -rf $(VENV) sonify-work sonify-demo artifacts .pytest_cache
