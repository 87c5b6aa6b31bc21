# Thin wrappers. `make book` and `make test` each set up .venv first (once).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed

SUDO    = $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)

.PHONY: setup browser book lint test lab assignments zoo samples reproduce bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[book,test,classroom,parallel]"
	# cleverhans 4.0.0 pins helpers it never imports under TF2 (nose, mnist, tfp); it needs only TF + NumPy.
	$(BIN)/python -m pip install -q --no-deps "cleverhans==4.0.0"
	touch $(STAMP)

book: setup
	$(BIN)/jupyter-book build . --warningiserror --keep-going
	@echo "Open _build/html/index.html"

# The book's browser check needs Debian's chromium (tests/test_book_browser.py).  Two checkouts set up
# at once on a fresh machine both install it: the second waits for apt's lock instead of failing.
APT = $(SUDO) apt-get -o DPkg::Lock::Timeout=600
browser:
	@command -v chromium >/dev/null 2>&1 || { echo "Installing Debian's chromium for the browser check"; \
	  $(APT) update -qq && $(APT) install -y -qq chromium >/dev/null; }

# ruff (configured in pyproject.toml) over the library, tests, scripts and the notebooks.
lint: setup
	$(BIN)/ruff check empir_lib tests scripts benchmarks book

# The lint runs first: CI (.ci/run) calls `make test`, so it checks both.
test: setup browser lint
	$(BIN)/python -m pytest --nbval-lax tests book

lab: setup
	$(BIN)/jupyter lab book

# Classroom: each chapter's student notebook and Otter autograder in _build/assignments/ (book/exercises/README.md).
assignments: setup
	$(BIN)/empir assignments build

zoo: setup
	$(BIN)/empir zoo build --dataset mnist
	$(BIN)/empir zoo build --dataset cifar10

samples: setup
	$(BIN)/empir samples

# Full-test-set results under data/results (hours on a 2-core CPU; resumable).
reproduce: setup
	$(BIN)/empir reproduce mnist
	$(BIN)/empir reproduce cifar10

# Speed of attacks and training, and the book's run and build times -> benchmarks/
bench: setup
	$(BIN)/empir bench --book

clean:
	rm -rf _build .pytest_cache
