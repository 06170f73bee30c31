# Cinder: the commands a developer, an operator and CI run. `make help` lists them.

SHELL    := /bin/bash
DEV_ADDR ?= 127.0.0.1:8787
DATA_DIR ?= .cinder/dev
PYTHON   ?= python3
# Console scripts of the Python that `make test-deps` installs into (not always on PATH).
PYBIN    := $(shell $(PYTHON) -c 'import sysconfig; print(sysconfig.get_path("scripts"))' 2>/dev/null)
SAM      := SAM_CLI_TELEMETRY=0 AWS_DEFAULT_REGION=$${AWS_DEFAULT_REGION:-us-east-1} $(PYBIN)/sam
FUNCTIONS := cinder-keys cinder-enclave cinder-spine cinder-shards cinder-media cinder-burn

.PHONY: help dev test test-deps lint lint-rust lint-template fmt build build-deps deploy bench clean-dev

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

dev: ## Run every function locally on SQLite (DEV_ADDR, DATA_DIR to change)
	cargo run -p cinder-dev -- --addr $(DEV_ADDR) --data-dir $(DATA_DIR)

test: test-deps lint-template ## Run every test (starts moto itself) and lint the template
	@set -o pipefail; cargo test --workspace 2>&1 | awk '{ print; fflush() } \
		/^test result:/ { passed += $$4; failed += $$6 } \
		END { printf "\ntests: %d passed, %d failed\n", passed, failed }'

test-deps: ## Install what the tests need from PyPI (moto, cfn-lint, SAM CLI)
	$(PYTHON) -m pip install --quiet --disable-pip-version-check -r tests/requirements.txt

lint: lint-rust lint-template ## fmt, clippy and the template linters

lint-rust:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

lint-template:
	$(PYBIN)/cfn-lint template.yaml
	AWS_ACCESS_KEY_ID=$${AWS_ACCESS_KEY_ID:-offline} AWS_SECRET_ACCESS_KEY=$${AWS_SECRET_ACCESS_KEY:-offline} \
		$(SAM) validate --lint -t template.yaml

fmt: ## Format the code
	cargo fmt --all

build-deps: ## Install cargo-lambda (from PyPI)
	$(PYTHON) -m pip install --quiet --disable-pip-version-check cargo-lambda

build: build-deps ## Build the Lambda binaries for arm64 (fetches the arm64 target)
	rustup target add aarch64-unknown-linux-gnu
	PATH="$(PYBIN):$$PATH" cargo lambda build --release --arm64 $(addprefix --bin ,$(FUNCTIONS))

deploy: build-deps ## Build with SAM and deploy to your AWS account, guided
	PATH="$(PYBIN):$$PATH" $(SAM) build --beta-features
	$(SAM) deploy --guided

bench: ## Print latency and crypto-cost figures
	cargo bench -p cinder-tests --bench keys
	cargo bench -p cinder-tests --bench accounts
	cargo bench -p cinder-tests --bench rooms
	cargo bench -p cinder-tests --bench media

clean-dev: ## Delete the dev server's data folder
	rm -rf $(DATA_DIR)
