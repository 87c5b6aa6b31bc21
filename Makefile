# Thin wrappers. `make book` and `make test` each set up .venv first (once).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed

.PHONY: setup book test lab zoo samples clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[book,test]"
	# cleverhans 4.0.0 pins helpers it never imports under TF2 (nose, mnist, tfp); it needs only TF + NumPy.
	$(BIN)/python -m pip install -q --no-deps "cleverhans==4.0.0"
	touch $(STAMP)

book: setup
	$(BIN)/jupyter-book build . --warningiserror --keep-going
	@echo "Open _build/html/index.html"

test: setup
	$(BIN)/python -m pytest --nbval-lax tests book

lab: setup
	$(BIN)/jupyter lab book

zoo: setup
	$(BIN)/empir zoo build --dataset mnist
	$(BIN)/empir zoo build --dataset cifar10

samples: setup
	$(BIN)/empir samples

clean:
	rm -rf _build .pytest_cache
