# make bench: every benchmark of bench/ in one run (bench/run.lua says what and
# how), printing the tables and writing bench/RESULTS.md. Under 5 minutes; it
# prints numbers and never fails on them. Included by the Makefile.
#   BENCH_QUICK=1 make bench       a smoke run with small sizes
#   BENCH_ROUNDS=N make bench      rounds of the exchange matrix (default 3)
#   BENCH_QUIET_WAIT=S make bench  first wait up to S seconds for a load average under 0.5
BENCH_EXCHANGE = build/bench/exchange
# beyond `tools/deps test luas`: the C baseline's JSON library, the contenders, nginx's echo module
BENCH_PKGS = libcjson-dev lua-http lua-sec libnginx-mod-http-echo

.PHONY: bench-deps

$(BENCH_EXCHANGE): bench/exchange.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(WARN) $< -o $@ -lcurl -lcjson

bench-deps:
	@tools/deps test luas
	@missing=""; for p in $(BENCH_PKGS); do \
	  [ "$$(dpkg-query -W -f='$${Status}' $$p 2>/dev/null)" = "install ok installed" ] || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "bench: installing:$$missing"; \
	  sudo=""; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	  $$sudo apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -q --no-install-recommends $$missing >/dev/null; \
	fi

bench: bench-deps $(CORE)
	@$(MAKE) --no-print-directory $(BENCH_EXCHANGE)
	@$(MAKE) --no-print-directory core LUA_INC=/usr/include/luajit-2.1 BUILD=build/luajit
	$(LUA) bench/run.lua
