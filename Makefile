# ckpt: freeze a running process into a file that resumes it.
PREFIX ?= /usr/local
DESTDIR ?=
CARGO ?= cargo
BIN := target/release/ckpt

.PHONY: build test bench demo install deps fuzz clean

build:
	$(CARGO) build --release

# Everything the tests need (cc, python3, file, gdb, tmux, setpriv), then all tests.
test: deps
	$(CARGO) test --workspace --release

bench: deps build
	./scripts/bench.sh

demo: build
	./scripts/demo.sh

deps:
	./scripts/install-deps.sh

install: build
	install -D -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/ckpt
	install -d $(DESTDIR)$(PREFIX)/lib/ckpt
	./$(BIN) restorer -o $(DESTDIR)$(PREFIX)/lib/ckpt/ckpt-restorer

clean:
	$(CARGO) clean
