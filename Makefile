# Two commands do all set-up on a fresh machine (Python 3.11):
#   make demo   # virtualenv + install, then raw demo videos -> TFRecords -> pretrain -> evaluate -> export
#   make test   # virtualenv + install, then the whole test suite on the CPU
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO_DIR ?= demo_output
PYTEST_WORKERS ?= 2

.PHONY: demo test install clean-demo

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

install: $(VENV)/.installed

demo: install
	$(PY) -m official_cvrl.demo --output_dir=$(DEMO_DIR)

test: install
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadfile tests

clean-demo:
	rm -rf $(DEMO_DIR)
