# The two commands a newcomer needs:
#   make run    start the service locally (emulator + API on 127.0.0.1:3000) and show it working
#   make test   lint, validate the template and the OpenAPI document, run every test
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
VENV := .venv
PYTHON ?= python3
export SAM_CLI_TELEMETRY := 0
export AWS_DEFAULT_REGION ?= us-east-1

.PHONY: run test lint tools token build clean bench bench-ingest

## Pinned Python tools (moto server, cfn-lint, SAM CLI, cargo-lambda) in .venv/
tools: $(VENV)/.installed
$(VENV)/.installed: infra/requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r infra/requirements.txt
	touch $@

## Start the emulator, create the tables from template.yaml, serve the API on 127.0.0.1:3000
run: tools
	cargo build --quiet -p local-stack
	infra/with-emulator.sh target/debug/local-stack up

## Lint everything, then run all tests against the emulator
test: lint
	mkdir -p target
	infra/with-emulator.sh cargo test --workspace 2>&1 | tee target/test-output.log
	@awk '/^test result:/ {p += $$4; f += $$6} END {printf "summary: %d passed, %d failed\n", p, f}' target/test-output.log

lint: tools
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	$(VENV)/bin/cfn-lint template.yaml
	$(VENV)/bin/sam validate --lint --template template.yaml
	$(VENV)/bin/python -c 'import sys, yaml; from openapi_spec_validator import validate; validate(yaml.safe_load(open(sys.argv[1]))); print("openapi: valid")' functions/subscriptions-api/openapi.yaml

## Benchmarks (numbers go to BENCHMARKS.md)
bench: bench-ingest
bench-ingest: tools
	infra/with-emulator.sh cargo bench --quiet -p job-events-ingest --bench ingest

## Print a development bearer token: make token COMPANY=acme
token:
	@cargo run --quiet -p local-stack -- token $(or $(COMPANY),demo-company)

clean:
	rm -rf target $(VENV) .aws-sam
