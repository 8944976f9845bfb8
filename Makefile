# ACB: the two commands a user needs are `make run` and `make test`.

# Development only: the bus signs and checks agent tokens with this secret. Set your own in production.
export ACB_TOKEN_SECRET ?= acb-development-secret-change-me-0001
export ACB_PORT ?= 7400
# `make run` serves TLS, with a development CA and certificates that scripts/dev-certs.sh makes in
# .certs/; the demos trust that CA. (Tests make their own certificates.)
run: export ACB_TLS_CERT ?= $(CURDIR)/.certs/server.pem
run: export ACB_TLS_KEY ?= $(CURDIR)/.certs/server.key
run demo demo-stream demo-contexts: export ACB_TLS_CA ?= $(CURDIR)/.certs/ca.pem

.PHONY: run test build down demo demo-stream demo-contexts bench bench-contexts bench-python fuzz clean

build:
	@scripts/ensure-deps.sh
	swift build

# The sidecars (PostgreSQL, Redis, the Kafka-protocol broker) as local processes, and what they need:
# scripts/sidecars.sh starts them idempotently and prints their addresses as ACB_* settings.
SIDECARS := scripts/sidecars.sh up >/dev/null && eval "$$(scripts/sidecars.sh env)" && export ACB_SPOOL_DIR=$(CURDIR)/.sidecars/spool

run: build
	@scripts/dev-certs.sh .certs
	@$(SIDECARS) && $$(swift build --show-bin-path)/acb migrate
	@echo
	@echo "ACB listens for agents on 127.0.0.1:$(ACB_PORT) (TLS 1.3, wire protocol 1 or 2: docs/protocol.md);"
	@echo "its certificate is signed by the development CA .certs/ca.pem (scripts/dev-certs.sh),"
	@echo "with PostgreSQL, Redis and the Kafka audit stream (docs/audit.md) started by scripts/sidecars.sh."
	@echo "In another shell, from this folder:"
	@echo "  make demo          # two agents exchange messages and a request/reply"
	@echo "  make demo-stream   # one agent streams 100 MiB to another, with a progress line"
	@echo "  make demo-contexts # two agents share a context, watch it field by field, and race a compare-and-swap"
	@echo "Tokens for your own agents:"
	@echo "  $$(swift build --show-bin-path)/acb token issue --agent NAME --tenant demo --token-secret '$(ACB_TOKEN_SECRET)'"
	@echo "The admin REST API is on http://127.0.0.1:7401 (its documentation: /api/v1/docs; docs/admin-api.md)."
	@echo "Stop with Ctrl-C: the bus sends GOAWAY, drains and exits 0. Stop the sidecars with: make down"
	@echo
	@$(SIDECARS) && exec $$(swift build --show-bin-path)/acb serve --port $(ACB_PORT)

# scripts/readme-example.sh builds README.md's client example in a package of its own, as a user
# would; ReadmeExampleTests runs it against a bus. scripts/python-client.sh runs ruff, mypy --strict
# and pytest on the Python client (clients/python) against the bus, in a venv of its own (.python/).
test:
	@scripts/ensure-deps.sh
	swift build --build-tests
	scripts/readme-example.sh
	@$(SIDECARS) && swift test --skip-build
	@$(SIDECARS) && scripts/python-client.sh

# A longer fuzz run than the one in `make test`: 5,000,000 mutated frames and 100,000 mutated
# handshakes (ACB_FUZZ_SEED picks another sequence of mutations).
fuzz:
	@scripts/ensure-deps.sh
	ACB_FUZZ_ITERATIONS=$${ACB_FUZZ_ITERATIONS:-5000000} swift test --filter 'FrameFuzzTests|HandshakeFuzzTests'

down:
	@scripts/sidecars.sh down

demo:
	@scripts/demo.sh pair

demo-stream:
	@scripts/demo.sh stream --size-mib 100

demo-contexts:
	@scripts/demo.sh contexts

bench:
	@scripts/bench.sh

bench-contexts:
	@scripts/bench-contexts.sh

# The Python client against nats-py (clients/python/bench), into BENCHMARKS.md.
bench-python:
	@scripts/bench-python.sh --write

clean:
	swift package clean
