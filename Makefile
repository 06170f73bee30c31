# Cinder: the commands a developer, an operator and CI run. `make help` lists them.

SHELL    := /bin/bash
DEV_ADDR ?= 127.0.0.1:8787
DATA_DIR ?= .cinder/dev
PYTHON   ?= python3
# Console scripts of the Python that `make test-deps` installs into (not always on PATH).
PYBIN    := $(shell $(PYTHON) -c 'import sysconfig; print(sysconfig.get_path("scripts"))' 2>/dev/null)
SAM      := SAM_CLI_TELEMETRY=0 AWS_DEFAULT_REGION=$${AWS_DEFAULT_REGION:-us-east-1} $(PYBIN)/sam
# Every Lambda binary; tests/tests/deploy_consistency.rs checks this against functions/ and
# template.yaml.
FUNCTIONS := cinder-keys cinder-enclave cinder-spine cinder-shards cinder-media cinder-burn cinder-live cinder-calls
LAMBDA_BUILD := PATH="$(PYBIN):$$PATH" cargo lambda build --release --arm64 $(addprefix --bin ,$(FUNCTIONS))
# make watch: moto's address, and the port cargo lambda watch serves the functions on.
MOTO_HOST  ?= 127.0.0.1
MOTO_PORT  ?= 5050
WATCH_PORT ?= 9000

.PHONY: help dev test test-deps lint lint-rust lint-template fmt build build-deps package deploy deploy-deps watch bench bench-turn turn-static fuzz mutants clean-dev

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

dev: ## Run every function locally on SQLite (DEV_ADDR, DATA_DIR to change)
	cargo run -p cinder-dev -- --addr $(DEV_ADDR) --data-dir $(DATA_DIR)

test: test-deps lint-template ## Run every test (starts moto itself), the API contract run, and lint the template
	@set -o pipefail; cargo test --workspace 2>&1 | awk '{ print; fflush() } \
		/^test result:/ { passed += $$4; failed += $$6 } \
		END { printf "\ntests: %d passed, %d failed\n", passed, failed }'
	$(PYTHON) tests/contract/run.py

test-deps: ## Install what the tests need: PyPI (moto, cfn-lint, SAM CLI, schemathesis), apt (coturn's client tools)
	$(PYTHON) -m pip install --quiet --disable-pip-version-check -r tests/requirements.txt
	@# coturn's turnutils_uclient and turnutils_peer: a TURN client nobody here wrote, for the relay's tests.
	@command -v turnutils_uclient >/dev/null || { \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq || true; \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends coturn; }

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

build-deps: ## Install cargo-lambda (from PyPI) and the aarch64 Rust target
	$(PYTHON) -m pip install --quiet --disable-pip-version-check cargo-lambda
	rustup target add aarch64-unknown-linux-gnu

build: build-deps ## Build the Lambda binaries for arm64 (target/lambda/<name>/bootstrap)
	$(LAMBDA_BUILD)

# The same build with zip output: after `make build` cargo has nothing left to compile, so
# this only zips. The table reads the binary's size from inside each zip, so it is right
# whichever of the two outputs is on disk.
package: build ## One zip per function (target/lambda/<name>/bootstrap.zip) and a size table
	$(LAMBDA_BUILD) --output-format zip
	@$(PYTHON) -c 'import os, sys, zipfile; \
	mb = lambda n: "%.1f MiB" % (n / 2**20); \
	print("%-16s %10s %10s" % ("function", "binary", "zip")); \
	[print("%-16s %10s %10s" % (n, mb(zipfile.ZipFile(z).getinfo("bootstrap").file_size), mb(os.path.getsize(z)))) \
	 for n in sys.argv[1:] for z in ["target/lambda/%s/bootstrap.zip" % n]]' $(FUNCTIONS)

deploy-deps: build-deps ## Install the SAM CLI (from PyPI)
	$(PYTHON) -m pip install --quiet --disable-pip-version-check aws-sam-cli

# sam build runs cargo lambda itself (the template's rust-cargolambda build method), so
# PATH must reach the pip-installed cargo-lambda.
deploy: deploy-deps ## Build with SAM and deploy to your AWS account, guided (docs/DEPLOY.md)
	PATH="$(PYBIN):$$PATH" $(SAM) build
	$(SAM) deploy --guided

# The real function binaries, on moto, under `cargo lambda watch`: moto is started unless
# something already answers on MOTO_PORT (and stopped again on exit if this started it),
# the tables and bucket are created from shared/aws/src/schema.rs, and every
# function gets deploy/env.local.json's variables (its local-only secrets too). Each function answers under
# http://127.0.0.1:$(WATCH_PORT)/lambda-url/<binary>/…; docs/DEPLOY.md says how to call them.
watch: build-deps ## Run the real Lambda binaries under cargo lambda watch, on moto (docs/DEPLOY.md)
	@set -e; mkdir -p .cinder; \
	if ! (exec 3<>/dev/tcp/$(MOTO_HOST)/$(MOTO_PORT)) 2>/dev/null; then \
		echo "starting moto on $(MOTO_HOST):$(MOTO_PORT) (log: .cinder/moto.log)"; \
		$(PYTHON) tests/moto_serial.py $(MOTO_HOST) $(MOTO_PORT) >.cinder/moto.log 2>&1 & moto=$$!; \
		trap 'kill $$moto 2>/dev/null' EXIT; \
		for i in $$(seq 150); do (exec 3<>/dev/tcp/$(MOTO_HOST)/$(MOTO_PORT)) 2>/dev/null && break; sleep 0.2; done; \
	fi; \
	cargo run -q -p cinder-tests --bin local-aws -- http://$(MOTO_HOST):$(MOTO_PORT) local-; \
	$(PYTHON) -c 'import json, sys; env = {k: v for f in json.load(open(sys.argv[1])).values() for k, v in f.items()}; \
		print("\n".join(f"{k}={v}" for k, v in sorted(env.items())))' deploy/env.local.json >.cinder/watch.env; \
	printf '%s\n' AWS_ENDPOINT_URL=http://$(MOTO_HOST):$(MOTO_PORT) AWS_REGION=us-east-1 \
		AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local RUST_LOG=info >>.cinder/watch.env; \
	echo "functions at http://127.0.0.1:$(WATCH_PORT)/lambda-url/<binary>/… (binaries: $(FUNCTIONS))"; \
	PATH="$(PYBIN):$$PATH" cargo lambda watch --invoke-address 127.0.0.1 --invoke-port $(WATCH_PORT) \
		--env-file .cinder/watch.env

bench: ## Print latency and crypto-cost figures
	cargo bench -p cinder-tests --bench keys
	cargo bench -p cinder-tests --bench accounts
	cargo bench -p cinder-tests --bench rooms
	cargo bench -p cinder-tests --bench media
	cargo bench -p cinder-tests --bench live
	@# The live function's fan-out cost per notice (1 and 100 subscribers), through the shipped binary on moto.
	cargo test --release -p cinder-live --test lambda -- --nocapture a_hundred_subscribers_all_hear_and_what_a_notice_costs
	cargo build --release -p cinder-keys -p cinder-enclave -p cinder-spine -p cinder-shards -p cinder-media && cargo bench -p cinder-tests --bench operations
	cargo bench -p cinder-tests --bench coldstart
	@# 32 clients for SOAK_SECS (60) against the dev server's release binary: errors, lost and duplicated messages, memory, throughput.
	cargo build --release -p cinder-dev && cargo bench -p cinder-tests --bench soak

# The relay's data path is measured at opt-level 3, as turn/Dockerfile builds it (the
# workspace's bench profile is tuned for the Lambda binaries); needs the coturn package.
bench-turn: ## cinder-turn beside coturn under turnutils_uclient load: loss, RTT, CPU per packet, peak memory
	CARGO_PROFILE_BENCH_OPT_LEVEL=3 cargo bench -p cinder-turn --bench relay

# The relay's container build, without a Docker engine: the same static musl binary the
# image holds (turn/Dockerfile), checked to link nothing dynamically and to run.
turn-static: ## Build cinder-turn as a static musl binary (what turn/Dockerfile ships) and check it
	rustup target add x86_64-unknown-linux-musl
	@command -v musl-gcc >/dev/null || { SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends musl-tools; }
	CARGO_PROFILE_RELEASE_OPT_LEVEL=3 CARGO_PROFILE_RELEASE_PANIC=unwind CARGO_PROFILE_RELEASE_LTO=thin \
		cargo build --release --target x86_64-unknown-linux-musl -p cinder-turn
	@f=target/x86_64-unknown-linux-musl/release/cinder-turn; \
	if ldd $$f 2>&1 | grep -q '=>'; then echo "$$f links dynamically" >&2; exit 1; fi; \
	$$f --help >/dev/null && ls -l $$f && echo "$$f: static, runs"

# Fuzzing (docs/FUZZING.md), apart from `make test`: every cargo-fuzz target in fuzz/ for
# FUZZ_SECS seconds each, with overflow checks on (-a), starting from its committed corpus
# (fuzz/corpus/<target>/, only read); new inputs go to fuzz/corpus-new/<target>/, crashes
# to fuzz/artifacts/<target>/. Runs every target, then fails if any crashed. Needs the
# nightly toolchain; installs cargo-fuzz if missing.
FUZZ_SECS ?= 30
fuzz: ## Run every fuzz target for FUZZ_SECS (30) seconds each; fails if one crashes
	@command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
	cd fuzz && cargo +nightly fuzz build -a
	@cd fuzz; failed=""; for t in $$(cargo +nightly fuzz list); do \
		echo "== fuzz $$t: $(FUZZ_SECS)s"; mkdir -p corpus/$$t corpus-new/$$t; \
		if cargo +nightly fuzz run -a $$t corpus-new/$$t corpus/$$t -- -max_total_time=$(FUZZ_SECS) \
			-timeout=10 -print_final_stats=1 >corpus-new/$$t.log 2>&1; then \
			grep -E '^stat::(number_of_executed_units|new_units_added)' corpus-new/$$t.log | tr '\n' ' '; echo; \
		else tail -n 40 corpus-new/$$t.log; failed="$$failed $$t"; fi; \
	done; \
	if [ -n "$$failed" ]; then echo "fuzz: crashed:$$failed (inputs in fuzz/artifacts/)"; exit 1; fi; \
	echo "fuzz: every target ran $(FUZZ_SECS)s without a crash"

# Mutation testing (docs/MUTANTS.md), apart from `make test`: cargo-mutants over each slice
# with the tests the report measured it with. The mutants the report lists as harmless are
# excluded (-E), so a run fails exactly when a mutant no test notices is new. Runs every
# slice, then fails if any missed one. In place (the tree is mutated and restored; build
# nothing else meanwhile); results under mutants.out/<slice>/. MUTANTS_ARGS goes to every
# run (e.g. --shard 0/4, or --list). Installs cargo-mutants if missing; the rooms slice's
# integration tests start moto (test-deps). cargo-mutants 27.1 builds its unmutated baseline
# for the mutated package only, where `--test=rooms_api` names nothing, so that slice runs
# its baseline itself and skips cargo-mutants' (the -C arguments reach every cargo call;
# `--package=cinder-server` adds the crate's own unit tests to the integration tests).
MUTANTS_ARGS ?=
MUTANTS := cargo mutants --in-place --no-shuffle --timeout 300 $(MUTANTS_ARGS)
mutants: test-deps ## Mutation-test auth, extractors, limits, room, message, call, key, account and media rules, the client's key directory, enclave, login, room chain, message and media opening
	@command -v cargo-mutants >/dev/null || cargo install cargo-mutants --locked
	@mkdir -p mutants.out
	@failed=""; run() { slice=$$1; shift; echo "== mutants: $$slice"; \
		$(MUTANTS) -o mutants.out/$$slice "$$@" || failed="$$failed $$slice"; }; \
	run limits -f shared/server/src/limits.rs --test-package cinder-server \
		-E 'impl fmt::Debug for (Rate|Limiter)>::fmt|with_source_addr|Limits::from_env' -- --lib; \
	if cargo test -q -p cinder-keys --test lambda >/dev/null 2>&1; \
	then run limits-lambda -f shared/server/src/limits.rs --baseline skip \
		-F 'with_source_addr|Limits::from_env' --test-package cinder-keys -- --test lambda; \
	else echo "limits-lambda: the unmutated tests fail"; failed="$$failed limits-lambda"; fi; \
	run auth -f shared/server/src/auth.rs -f shared/server/src/extract.rs --test-package cinder-server -- --lib; \
	if cargo test -q -p cinder-server -p cinder-tests --lib --test rooms_api --test rooms_capabilities >/dev/null 2>&1; \
	then run rooms -f shared/server/src/spine/domain.rs -f shared/server/src/shards/domain.rs --baseline skip \
		--test-package cinder-tests -C=--package=cinder-server -C=--lib -C=--test=rooms_api -C=--test=rooms_capabilities; \
	else echo "rooms: the unmutated tests fail"; failed="$$failed rooms"; fi; \
	if cargo test -q -p cinder-server -p cinder-tests --lib --test calls_api --test calls_dev >/dev/null 2>&1; \
	then run calls -f shared/server/src/calls/domain.rs --baseline skip \
		--test-package cinder-tests -C=--package=cinder-server -C=--lib -C=--test=calls_api -C=--test=calls_dev; \
	else echo "calls: the unmutated tests fail"; failed="$$failed calls"; fi; \
	if cargo test -q -p cinder-server -p cinder-tests --lib --test keys_api >/dev/null 2>&1; \
	then run keys -f shared/server/src/keys/domain.rs --baseline skip \
		--test-package cinder-tests -C=--package=cinder-server -C=--lib -C=--test=keys_api; \
	else echo "keys: the unmutated tests fail"; failed="$$failed keys"; fi; \
	if cargo test -q -p cinder-server -p cinder-tests --lib --test accounts_api >/dev/null 2>&1; \
	then run accounts -f shared/server/src/accounts/domain.rs --baseline skip \
		-E 'accounts/domain\.rs:494:9: replace \|\| with && in reauth_finish' \
		--test-package cinder-tests -C=--package=cinder-server -C=--lib -C=--test=accounts_api; \
	else echo "accounts: the unmutated tests fail"; failed="$$failed accounts"; fi; \
	run media -f shared/server/src/media/domain.rs --test-package cinder-server -- --lib; \
	run client -f client/src/directory.rs -f client/src/account.rs \
		-F 'directory\.rs|account\.rs.*(EnclaveKey|in aad| aad ->|argon2)' \
		-E 'replace \|\| with && in Client::verified_keys' --test-package cinder-client -- --lib; \
	run client-state -f client/src/rooms/state.rs \
		-F 'state\.rs.*(check_genesis|spine_aad|open_entry|Client::verify_signed|Client::verify_successor|Client::anchor|Membership::keys_match)' \
		-F 'state\.rs.*(burn_history_extends|ChannelInfo::burn_secs_for|Membership::install)' \
		--test-package cinder-client -- --lib; \
	run client-media -f client/src/media.rs \
		-F 'media\.rs.*(in |replace )( aad|Opener::finish|Opener::feed|Opener::open_segment|nonce|segments|sealed_len|crate::Client::not_burnt|crate::Client::download)( |$$)' \
		-E 'replace \|\| with && in Opener::finish' --test-package cinder-client -- --lib; \
	run client-messages -f client/src/rooms/messages.rs \
		-F 'messages\.rs.*(in |replace )(Content::parse|Content::within_bounds|Continuity::observe|shard_aad|commitment|commitment_over|split_epoch|message_signed_bytes|content_hash|message_hash|check_burn|Opened::verify|open_message|place|open_with|open_page|burnt|check_shard|OpenedPage<._>::verify|OpenedPage<.*_>::signers|received|with_burn_time|verify_signatures|strict_r|Client::verified_page|Client::message|Client::read)( |$$)' \
		-E 'replace >= with < in verify_signatures' --test-package cinder-client -- --lib; \
	if cargo test -q -p cinder-client -p cinder-tests --lib --test faults >/dev/null 2>&1; \
	then run client-chain -f client/src/rooms/state.rs --baseline skip \
		-F 'state\.rs.*(in |replace )(check_successor|Client::settle|Client::ancestors|Membership::merge|Client::stored_as_created|owed|Membership::rekeyed|Spine::member|Spine::channel|Spine::is_admin|Spine::capability_keys|state_hash|Client::sync|Client::spine_page|Membership::joined|Membership::capabilities_for_state)( |$$)' \
		-E 'replace < with <= in Client::ancestors' -E 'replace && with \|\| in Client::settle' \
		-E 'replace match guard e.code\(\) == Some\(ErrorCode::Unauthenticated\) with true in Client::spine_page' \
		--test-package cinder-tests -C=--package=cinder-client -C=--lib -C=--test=faults; \
	else echo "client-chain: the unmutated tests fail"; failed="$$failed client-chain"; fi; \
	if cargo test -q -p cinder-client -p cinder-tests --lib --test accounts_api >/dev/null 2>&1; \
	then run client-login -f client/src/account.rs --baseline skip \
		-F 'account\.rs.*(in |replace )(login_finish|Client::login|Client::reauthenticate|registration_finish|registration_start)( |$$)' \
		--test-package cinder-tests -C=--package=cinder-client -C=--lib -C=--test=accounts_api; \
	else echo "client-login: the unmutated tests fail"; failed="$$failed client-login"; fi; \
	if [ -n "$$failed" ]; then echo "mutants: missed in:$$failed (mutants.out/<slice>/mutants.out/missed.txt)"; exit 1; fi; \
	echo "mutants: every slice's mutants caught, unviable or listed as harmless"

clean-dev: ## Delete the dev server's data folder
	rm -rf $(DATA_DIR)
