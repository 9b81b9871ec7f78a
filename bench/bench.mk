# make bench: every benchmark of bench/ in one run (bench/run.lua says what and
# how), printing the tables and writing bench/RESULTS.md. Under 5 minutes; it
# prints numbers and never fails on them. Included by the Makefile.
#   BENCH_QUICK=1 make bench       a smoke run with small sizes
#   BENCH_ROUNDS=N make bench      rounds of the exchange matrix (default 3)
#   BENCH_QUIET_WAIT=S make bench  first wait up to S seconds for a load average under 0.5
#   BENCH_VARIANTS=1 make bench    also modkie's core with bench/patches/ applied (01, then 01+02, …):
#                                  proposed fixes, measured beside the shipped core; not shipped
BENCH_EXCHANGE = build/bench/exchange
# beyond `tools/deps test luas` (libcjson-dev, which the C baseline uses too, is a build dependency):
# the contenders, nginx's echo module
BENCH_PKGS = lua-http lua-sec libnginx-mod-http-echo

BENCH_PATCHES = $(sort $(wildcard bench/patches/*.patch))

.PHONY: bench-deps bench-variants

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

# build/variants/pN: the C core (Lua 5.4) with the first N patches of bench/patches/ applied
bench-variants:
	@rm -rf build/variants; i=0; applied=""; for p in $(BENCH_PATCHES); do \
	  i=$$((i + 1)); applied="$$applied $$p"; d=build/variants/p$$i; mkdir -p $$d/modkie; cp -r src $$d/src; \
	  for q in $$applied; do patch -s -p1 -d $$d < $$q || exit 1; done; \
	  echo "bench: core with$$applied"; \
	  $(CC) $(CFLAGS) $(WARN) -fPIC -shared -I$$d/src -I/usr/include/lua5.4 $$d/src/*.c $$d/src/lib/*.c -o $$d/modkie/core.so $(LIBS) || exit 1; \
	done

bench: bench-deps $(CORE)
	@$(MAKE) --no-print-directory $(BENCH_EXCHANGE)
	@$(MAKE) --no-print-directory core LUA_INC=/usr/include/luajit-2.1 BUILD=build/luajit
	@if [ -n "$(BENCH_VARIANTS)" ]; then $(MAKE) --no-print-directory bench-variants; fi
	$(LUA) bench/run.lua
