# ckpt: freeze a running process into a file that resumes it.
PREFIX ?= /usr/local
DESTDIR ?=
CARGO ?= cargo
BIN := target/release/ckpt

.PHONY: build test stress bench demo install uninstall deps fuzz clean

build:
	$(CARGO) build --release

# Everything the tests need (cc, python3, file, gdb, tmux, setpriv), then all tests.
test: deps
	$(CARGO) test --workspace --release

# STRESS_CYCLES freeze/resume cycles in a row of the 8-thread fixture (`make test`
# runs the same test with 5).
STRESS_CYCLES ?= 100
stress: deps
	CKPT_STRESS_CYCLES=$(STRESS_CYCLES) $(CARGO) test --release -p ckpt --test e2e -- \
	  --exact threads::stress_freeze_resume_cycles --nocapture

bench: deps build
	./scripts/bench.sh

demo: build
	./scripts/demo.sh

deps:
	./scripts/install-deps.sh

# bin/ckpt and lib/ckpt/ckpt-restorer (the binfmt_misc interpreter; `ckpt binfmt
# register` finds it relative to bin/ckpt). Both are replaced, never rewritten in
# place: a restorer registered with binfmt_misc's F flag is held open by the kernel
# and writing it fails with ETXTBSY (install(1) unlinks the old file first).
# A registration keeps the old file open: re-run `ckpt binfmt register` afterwards.
#
# Also the shell completions (bash, zsh, fish) and the man pages (ckpt(1), one per
# subcommand), generated from the command line's definitions.
SHARE = $(DESTDIR)$(PREFIX)/share
install: build
	install -D -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/ckpt
	install -d $(DESTDIR)$(PREFIX)/lib/ckpt
	tmp=$$(mktemp) && trap 'rm -f "$$tmp"' EXIT && \
	  $(BIN) restorer -o "$$tmp" && \
	  install -m 0755 "$$tmp" $(DESTDIR)$(PREFIX)/lib/ckpt/ckpt-restorer
	install -d $(SHARE)/bash-completion/completions $(SHARE)/zsh/site-functions \
	  $(SHARE)/fish/vendor_completions.d $(SHARE)/man/man1
	$(BIN) completions bash > $(SHARE)/bash-completion/completions/ckpt
	$(BIN) completions zsh > $(SHARE)/zsh/site-functions/_ckpt
	$(BIN) completions fish > $(SHARE)/fish/vendor_completions.d/ckpt.fish
	$(BIN) man $(SHARE)/man/man1

# Removes what `install` put there (not a binfmt_misc registration: `ckpt binfmt
# unregister` first).
uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/ckpt $(DESTDIR)$(PREFIX)/lib/ckpt/ckpt-restorer
	rm -f $(SHARE)/bash-completion/completions/ckpt $(SHARE)/zsh/site-functions/_ckpt \
	  $(SHARE)/fish/vendor_completions.d/ckpt.fish $(SHARE)/man/man1/ckpt.1 $(SHARE)/man/man1/ckpt-*.1
	rmdir $(DESTDIR)$(PREFIX)/lib/ckpt 2>/dev/null || true

# Fuzz the image reader for FUZZ_TIME seconds (default 10 minutes): libFuzzer via
# cargo-fuzz (installed on first use; RUSTC_BOOTSTRAP=1 on stable), see fuzz/run.sh.
# `make test` runs a bounded built-in fuzz run (format/src/tests.rs) instead.
FUZZ_TIME ?= 600
fuzz:
	FUZZ_TIME=$(FUZZ_TIME) ./fuzz/run.sh

clean:
	$(CARGO) clean
