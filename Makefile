# The two commands a newcomer needs:
#   make run    start the service locally (emulator + API on 127.0.0.1:3000) and show it working
#   make test   lint, validate the template and the OpenAPI document, fuzz the API, run every test
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
VENV := .venv
PYTHON ?= python3
export SAM_CLI_TELEMETRY := 0
export AWS_DEFAULT_REGION ?= us-east-1

.PHONY: run simulate publish ingress-url redrive replay-ingest-failures secret-keys test lint tools token build clean bench bench-ingest

# The README's Node verification snippet (docs/snippets/verify.mjs) imports
# its packages from here; docs/snippets/package-lock.json pins them.
SNIPPETS_NODE := docs/snippets/node_modules

## Pinned Python tools (moto server, cfn-lint, SAM CLI, cargo-lambda) in .venv/,
## and the README's Node verification snippet's pinned packages
tools: $(VENV)/.installed $(SNIPPETS_NODE)/.installed
$(VENV)/.installed: infra/requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r infra/requirements.txt
	touch $@

$(SNIPPETS_NODE)/.installed: docs/snippets/package.json docs/snippets/package-lock.json
	npm ci --prefix docs/snippets --no-audit --no-fund --loglevel=error
	touch $@

# `make run` puts the emulator on a fixed loopback port so `make simulate`
# in another terminal finds it.
LOCAL_EMULATOR_PORT ?= 4599
LOCAL_AWS = AWS_ENDPOINT_URL=http://127.0.0.1:$(LOCAL_EMULATOR_PORT) AWS_ACCESS_KEY_ID=local \
	AWS_SECRET_ACCESS_KEY=local AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true

## The whole service locally: emulator, API on 127.0.0.1:3000, stream and queue
## runners, demo receiver on 127.0.0.1:3001, and a short demo. Ctrl-C stops.
run: tools
	cargo build --quiet -p local-stack
	EMULATOR_PORT=$(LOCAL_EMULATOR_PORT) infra/with-emulator.sh target/debug/local-stack up

## While `make run` serves: simulate jobs, e.g. make simulate COMPANY=acme JOBS=5
simulate:
	@$(LOCAL_AWS) cargo run --quiet -p local-stack -- simulate $(or $(COMPANY),demo-company) $(or $(JOBS),3)

## While `make run` serves: publish platform events (CloudEvents), e.g. make publish COMPANY=acme TYPES="engine.slow_query_event app.run_failed"
publish:
	@$(LOCAL_AWS) cargo run --quiet -p local-stack -- publish $(or $(COMPANY),demo-company) $(TYPES)

## While `make run` serves: the URL of the ingress queue (PlatformEventsQueue), for any SQS client
ingress-url:
	@$(LOCAL_AWS) cargo run --quiet -p local-stack -- ingress-url

## While `make run` serves: redrive dead letters, e.g. make redrive REQUEST='{"company_id":"acme","dry_run":true}'
redrive:
	@$(LOCAL_AWS) cargo run --quiet -p local-stack -- redrive '$(REQUEST)'

## While `make run` serves: replay IngestFailureQueue entries through ingest, e.g.
## make replay-ingest-failures REQUEST='{"dry_run":true}'
replay-ingest-failures:
	@$(LOCAL_AWS) cargo run --quiet -p local-stack -- replay-ingest-failures '$(REQUEST)'

## While `make run` serves: the signing-secret key function, e.g.
## make secret-keys REQUEST='{"action":"rotate"}', then REQUEST='{"action":"reencrypt"}'
# The default request: a dry run of re-encryption (a variable, since a comma
# inside $(or ...) would split its arguments).
SECRET_KEYS_DRY_RUN := {"action":"reencrypt","dry_run":true}
secret-keys:
	@$(LOCAL_AWS) cargo run --quiet -p local-stack -- secret-keys '$(or $(REQUEST),$(SECRET_KEYS_DRY_RUN))'

## Lint everything, build every test binary once, then run three lanes
## side by side, each with an emulator of its own (most tests wait on the
## emulator, timers and receivers rather than on the CPU): the end-to-end
## tests; every other crate's tests; the API fuzzed against its OpenAPI
## document, then the console's browser tests. Each lane's output is in
## target/ and printed when the lane ends.
test: lint browser-tools
	mkdir -p target
	cargo test --workspace --no-run --quiet
	@echo "three lanes side by side (end-to-end, crates, fuzz then browser); each prints when it ends"
	$(MAKE) --no-print-directory -j3 --output-sync=target LOCAL_STACK_BUILD=: \
		test-end-to-end test-crates test-api-and-console
	@cat target/test-end-to-end.log target/test-crates.log > target/test-output.log
	@awk '/^test result:/ {p += $$4; f += $$6} END {printf "summary: %d passed, %d failed\n", p, f}' target/test-output.log

.PHONY: test-end-to-end test-crates test-api-and-console
## The end-to-end tests (infra/local-stack/tests/it): the whole service on
## one machine, against the emulator.
test-end-to-end:
	EMULATOR_LOG=target/emulator-end-to-end.log infra/with-emulator.sh \
		cargo test -p local-stack --test it 2>&1 | tee target/test-end-to-end.log

## Every other test binary: unit tests and each crate's integration tests.
test-crates:
	EMULATOR_LOG=target/emulator-crates.log infra/with-emulator.sh \
		bash -c 'cargo test --workspace --exclude local-stack && cargo test -p local-stack --lib' \
		2>&1 | tee target/test-crates.log

## The API fuzzed against its OpenAPI document, then the console in Chromium.
test-api-and-console: fuzz
	$(MAKE) --no-print-directory browser-test

## How `make fuzz` and `make browser-test` get target/debug/local-stack.
## Under `make test` the tests' build has made it already: `cargo test`
## builds the binary with the features the tests unify, and a `cargo build`
## after it would compile a second copy of most crates.
LOCAL_STACK_BUILD ?= cargo build --quiet -p local-stack

.PHONY: browser-tools browser-test
## The distribution's Chromium (Debian packages chromium, chromium-driver;
## apt-get as root, or sudo) and the pinned Playwright in .venv/
CHROMIUM ?= /usr/bin/chromium
browser-tools: $(VENV)/.browser-installed
$(VENV)/.browser-installed: $(VENV)/.installed tests/browser/requirements.txt
	@if [ ! -x "$(CHROMIUM)" ]; then \
		sudo= ; [ "$$(id -u)" = 0 ] || sudo=sudo; \
		echo "installing Debian's chromium and chromium-driver"; \
		$$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null 2>&1 \
		|| { $$sudo apt-get update -qq && $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null; }; \
	fi
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r tests/browser/requirements.txt
	touch $@

## The console in headless Chromium against the local stack; screenshots
## of each main view in target/console-screenshots/
browser-test: tools browser-tools
	$(LOCAL_STACK_BUILD)
	@echo "browser: $$($(CHROMIUM) --version 2>/dev/null)"
	CHROMIUM=$(CHROMIUM) EMULATOR_LOG=target/emulator-browser.log infra/with-emulator.sh $(VENV)/bin/pytest -q -p no:cacheprovider tests/browser 2>&1 | tee target/browser-test-output.log

.PHONY: fuzz
## Contract fuzzing: schemathesis (every check, stateful phase) against the
## local API with functions/subscriptions-api/openapi.yaml; fails on any
## disagreement. Settings and the reasoned exceptions: infra/schemathesis.toml.
fuzz: tools
	mkdir -p target
	$(LOCAL_STACK_BUILD)
	EMULATOR_LOG=target/emulator-fuzz.log infra/with-emulator.sh infra/fuzz-api.sh 2>&1 | tee target/fuzz-output.log

lint: tools
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	$(VENV)/bin/cfn-lint template.yaml
	$(VENV)/bin/sam validate --lint --template template.yaml
	$(VENV)/bin/python -c 'import sys, yaml; from openapi_spec_validator import validate; validate(yaml.safe_load(open(sys.argv[1]))); print("openapi: valid")' functions/subscriptions-api/openapi.yaml

## Benchmarks (numbers go to BENCHMARKS.md)
bench: bench-ingest bench-load bench-heavy-tenant bench-recovery bench-cold-start bench-latency bench-cost bench-frontier bench-delivery bench-signing
bench-ingest: tools
	infra/with-emulator.sh cargo bench --quiet -p job-events-ingest --bench ingest -- throughput

.PHONY: bench-load
## One heavy company's burst beside 19 quiet ones through ingest: peak memory
## against fan-out, deadlines, calls per message, quiet latency, loss.
bench-load: tools
	infra/with-emulator.sh cargo bench --quiet -p job-events-ingest --bench ingest -- load

.PHONY: bench-heavy-tenant
## The same burst, scaled down, through the whole local stack (stream runner,
## ingest, queues, delivery, verifying receivers).
bench-heavy-tenant: tools
	infra/with-emulator.sh cargo bench --quiet -p local-stack --bench stack -- heavy_tenant

.PHONY: bench-recovery
## An outage and the endpoint's return through the whole local stack with
## the template's defaults: time to the first and last parked event, order.
bench-recovery: tools
	infra/with-emulator.sh cargo bench --quiet -p local-stack --bench stack -- recovery

.PHONY: bench-delivery bench-signing
## Deliveries/s of one delivery instance against a bare reqwest loop (fast loopback fakes, no emulator).
bench-delivery:
	cargo bench --quiet -p webhook-delivery --bench delivery

## Standard Webhooks signatures/s for 1 KiB bodies on one core.
bench-signing:
	cargo bench --quiet -p shared --bench signing

.PHONY: bench-cold-start
## Cold start and size of each function's release binary, configured from a
## stack deployed in the emulator. Builds them first: `cargo bench` leaves
## unstripped builds at the same paths.
bench-cold-start: tools
	cargo build --release --quiet -p subscriptions-api -p job-events-ingest -p webhook-delivery \
		-p dlq-redrive -p endpoint-prober -p secret-keys
	infra/with-emulator.sh cargo bench --quiet -p test-kit --bench cold_start

.PHONY: bench-cost
## $ per million delivered webhooks on AWS: the end-to-end workload with every
## AWS request counted and priced (infra/aws-prices.yaml).
bench-cost: tools
	infra/with-emulator.sh cargo bench --quiet -p local-stack --bench stack -- cost

.PHONY: bench-latency
## End-to-end latency through the local runner: job item write -> verified receipt.
bench-latency: tools
	infra/with-emulator.sh cargo bench --quiet -p local-stack --bench stack -- latency

.PHONY: bench-frontier
## The cost/latency frontier: stream windows x two loads, healthy and 30 %
## failing receivers, one table (infra/local-stack/benches/stack/frontier.rs).
bench-frontier: tools
	infra/with-emulator.sh cargo bench --quiet -p local-stack --bench stack -- frontier

## Build every function for Lambda (arm64) as template.yaml declares: sam build with
## cargo-lambda and zig from the venv on PATH. Artifacts in .aws-sam/build/
build: tools
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/sam build

## Print a development bearer token: make token COMPANY=acme
token:
	@cargo run --quiet -p local-stack -- token $(or $(COMPANY),demo-company)

clean:
	rm -rf target $(VENV) .aws-sam
