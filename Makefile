# tfadakd: `make test` and `make demo` each work on a fresh machine by themselves.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CACHE ?= $(HOME)/.cache/tfadakd
SHARED ?= ../shared
# tfds data dir used by tests and the demo; prepared offline from $(SHARED)/cifar when it exists.
TFDS_DATA_DIR ?= $(CACHE)/tfds
export TFDS_DATA_DIR

.PHONY: install data test demo benchmarks clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -e '.[test,litert]'
	touch $@

install: $(BIN)/.installed

data: install
	@if [ -f "$(SHARED)/cifar/prepare.py" ]; then \
		$(BIN)/python "$(SHARED)/cifar/prepare.py" --bin_dir "$(CACHE)/cifar-bin" --tfds_data_dir "$(TFDS_DATA_DIR)"; \
	else \
		echo "note: $(SHARED)/cifar not found; tfds will use TFDS_DATA_DIR=$(TFDS_DATA_DIR) or download"; \
	fi

test: data
	$(BIN)/python -m pytest

demo: data
	$(BIN)/python apps/distill.py --flagfile=apps/flags/quick.flags

clean:
	rm -rf $(VENV) .pytest_cache build dist *.egg-info
