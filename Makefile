# Two commands that set themselves up on a fresh machine:
#   make study   - the whole Li-In + Li-Sn study on the default potential (alloyflow-LiInSn for Li-In-Sn)
#   make test    - the test suite (unit, real-potential and notebooks)
VENV    ?= .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.alloyflow-installed
OUT     ?= alloyflow-out
PYTEST_ARGS ?=

.PHONY: install gpaw study hull test benchmarks clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# The CPU build of torch first: a bare torch requirement would pull CUDA.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[test,hpc]"
	touch $(STAMP)

install: $(STAMP)

# GPAW (real PAW DFT) builds against Debian's libxc/OpenBLAS/FFTW: needs root or sudo.
# Without it the GPAW tests skip; CI installs it (.ci/run).
gpaw: $(STAMP)
	.ci/install-gpaw.sh $(VENV)

study: $(STAMP)
	$(VENV)/bin/alloyflow study Li-In Li-Sn --out $(OUT)

hull: $(STAMP)
	$(VENV)/bin/alloyflow hull Li-Sn --out $(OUT)

test: $(STAMP)
	OPENBLAS_NUM_THREADS=1 $(PY) -m pytest -q --durations=15 --nbmake --nbmake-timeout=1200 tests notebooks $(PYTEST_ARGS)

benchmarks: $(STAMP)
	$(PY) benchmarks/hull.py
	$(PY) benchmarks/neb.py

clean:
	rm -rf $(OUT) .pytest_cache
