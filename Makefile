# confab: `make run-server` sets everything up and runs the server;
# `make test` runs every test. See README.md.

CARGO      ?= cargo
LISTEN     ?= 127.0.0.1:7878
# Also serve IRC clients there (docs/IRC.md), e.g. IRC_LISTEN=127.0.0.1:6697.
IRC_LISTEN ?=
DATA_DIR   ?= data
DB         ?= $(DATA_DIR)/confab.db
CERT_DIR   ?= certs
CONFAB_USER ?= $(shell id -un)

# Debian packages the build and the tools need: OpenSSL and SQLite headers
# for native-tls and rusqlite, ALSA headers for rodio (sound), pkg-config to
# find them, the openssl and sqlite3 command-line tools for `make certs` and
# `make db-shell`, tmux, in which the tests drive the real client, and
# PostgreSQL with pg_virtualenv (postgresql-common), with which the tests
# start throwaway clusters for the PostgreSQL backend, and irssi, the IRC
# client the IRC listener's tests drive.
DEB_PACKAGES = pkg-config libssl-dev libsqlite3-dev libasound2-dev openssl sqlite3 tmux \
               postgresql postgresql-common irssi

SERVER_BIN = target/release/confab-server
CLIENT_BIN = target/release/confab

.PHONY: all deps certs build man run-server run-cluster client test lint bench db-shell clean

all: build

# Installs missing system packages: with apt-get when root, otherwise
# prints the exact command and stops.
deps:
	@if ! command -v dpkg-query >/dev/null 2>&1; then \
	  echo "note: not a Debian system; make sure these are installed: $(DEB_PACKAGES)"; exit 0; fi; \
	missing=""; \
	for p in $(DEB_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing:$$missing"; \
	    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	  else \
	    echo "missing system packages:$$missing"; \
	    echo "run:  sudo apt-get install -y$$missing"; \
	    exit 1; \
	  fi; \
	fi
	@command -v $(CARGO) >/dev/null 2>&1 || { echo "cargo not found: install Rust (https://rustup.rs)"; exit 1; }

# A local CA and a server certificate for localhost; kept if present.
certs: $(CERT_DIR)/server.pem

$(CERT_DIR)/server.pem:
	@$(MAKE) --no-print-directory deps
	sh $(CERT_DIR)/gen-certs.sh $(CERT_DIR)

build: deps
	$(CARGO) build --release --locked

# Builds, makes certificates if needed, creates or migrates the database
# (the server applies schema.sql at start) and serves on $(LISTEN).
# Man pages and shell completions, generated from the clap definitions:
# target/man/*.1, target/completions/{bash,zsh,fish}/. (`man -l
# target/man/confab.1` reads one.)
man: build
	@mkdir -p target/man target/completions/bash target/completions/zsh target/completions/fish
	@for bin in $(CLIENT_BIN) $(SERVER_BIN); do \
	  name=$$(basename $$bin); \
	  $$bin --generate man > target/man/$$name.1 && \
	  $$bin --generate bash > target/completions/bash/$$name && \
	  $$bin --generate zsh > target/completions/zsh/_$$name && \
	  $$bin --generate fish > target/completions/fish/$$name.fish || exit 1; \
	done
	@echo "man pages in target/man, completions in target/completions"

run-server: build certs
	@mkdir -p $(DATA_DIR)
	$(SERVER_BIN) --listen $(LISTEN) --data-dir $(DATA_DIR) --db $(DB) \
	  --cert $(CERT_DIR)/server.pem --key $(CERT_DIR)/server.key \
	  $(if $(IRC_LISTEN),--irc-listen $(IRC_LISTEN))

# Two nodes on one throwaway PostgreSQL cluster (docs/SCALING.md): node A on
# 127.0.0.1:7878, node B on 127.0.0.1:7879, data under $(DATA_DIR)/node-a and
# node-b. pg_virtualenv (postgresql-common) makes the cluster, also as root,
# and drops it when the nodes stop (Ctrl-C). Chat across them with
#   target/release/confab --ca certs/ca.pem alice@localhost:7878
#   target/release/confab --ca certs/ca.pem bob@localhost:7879
CLUSTER_A ?= 127.0.0.1:7878
CLUSTER_B ?= 127.0.0.1:7879
run-cluster: build certs
	@mkdir -p $(DATA_DIR)/node-a $(DATA_DIR)/node-b
	pg_virtualenv -t sh -c '\
	  url="postgres://$$PGUSER:$$PGPASSWORD@$$PGHOST:$$PGPORT/postgres"; \
	  tls="--cert $(CERT_DIR)/server.pem --key $(CERT_DIR)/server.key"; \
	  $(SERVER_BIN) --listen $(CLUSTER_B) --data-dir $(DATA_DIR)/node-b --db "$$url" $$tls & b=$$!; \
	  trap "kill $$b 2>/dev/null; wait $$b" EXIT INT TERM; \
	  $(SERVER_BIN) --listen $(CLUSTER_A) --data-dir $(DATA_DIR)/node-a --db "$$url" $$tls'

# Connects to the local server as $(CONFAB_USER), trusting the local CA.
client: build certs
	$(CLIENT_BIN) --ca $(CERT_DIR)/ca.pem $(CONFAB_USER)@localhost:$(lastword $(subst :, ,$(LISTEN)))

# Every test: unit tests and the end-to-end tests against real servers.
test: deps
	$(CARGO) test --locked --all-targets

# Load scenarios against release servers on temporary databases; writes
# docs/BENCHMARKS.md. Takes a few minutes; never part of `make test`.
bench: build
	target/release/confab-bench --server $(SERVER_BIN) --out docs/BENCHMARKS.md

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

# sqlite3 on the server's database (safe while the server runs: WAL mode).
db-shell:
	@command -v sqlite3 >/dev/null 2>&1 || $(MAKE) --no-print-directory deps
	sqlite3 -header -column $(DB)

clean:
	$(CARGO) clean
