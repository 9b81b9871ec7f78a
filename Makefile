# modkie: `make demo` and `make test` install what is missing (Debian packages) themselves.
LUA ?= lua5.4
LUA_VERSION ?= 5.4
LUA_INC ?= /usr/include/lua$(LUA_VERSION)
BUILD ?= build/lua$(LUA_VERSION)
CC ?= gcc
CFLAGS ?= -O2 -g
WARN = -std=c99 -D_DEFAULT_SOURCE -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes
SANITIZE ?=
LIBS = -lcurl -lcjson -lcrypto -lhiredis -lmagic -lmicrohttpd -lm
PREFIX ?= /usr/local
INSTALL_LMOD ?= $(PREFIX)/share/lua/$(LUA_VERSION)
INSTALL_CMOD ?= $(PREFIX)/lib/lua/$(LUA_VERSION)

# src/lib/: the C library (knows no Lua); src/: its Lua bindings, one file per concept
LIB_SRC = $(wildcard src/lib/*.c)
SRC = $(wildcard src/*.c) $(LIB_SRC)
HDR = $(wildcard src/*.h src/lib/*.h)
LUA_SRC = $(wildcard lua/modkie/*.lua lua/modkie/*/*.lua)
CORE = $(BUILD)/modkie/core.so

export LUA_PATH := $(CURDIR)/lua/?.lua;$(CURDIR)/lua/?/init.lua;;
export LUA_CPATH := $(CURDIR)/$(BUILD)/?.so;;
# A suite that hangs fails after TEST_TIMEOUT seconds instead of holding CI
# (timeout signals its whole process group: busted and the Lua it starts).
TEST_TIMEOUT ?= 1800
TIMEOUT = timeout --kill-after=30 $(TEST_TIMEOUT)
BUSTED = $(TIMEOUT) busted --lua=$(LUA)
SPECS ?= spec
# the specs that drive the C core (valgrind is ~30x slower: not the emulator's own specs)
VALGRIND_SPECS ?= spec/client_spec.lua spec/await_spec.lua spec/errors_spec.lua spec/engine_spec.lua spec/store_spec.lua

.PHONY: all core examples deps test-deps test test-all test-other-luas test-shared test-openresty lint demo install install-lib install-mock clean bench asan asan-core valgrind

all: deps $(CORE)

# the C module alone, no package checks (luarocks builds this)
core: $(CORE)

# examples/host: a C program embedding Lua 5.4 with a 60 Hz frame loop
HOST = build/examples/modkie-host
examples: $(HOST)
$(HOST): examples/host/main.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(WARN) -I/usr/include/lua5.4 $< -o $@ -llua5.4

deps:
	@tools/deps build

# browser: headless Chromium for the review page's spec (#browser)
test-deps:
	@tools/deps test browser

$(CORE): $(SRC) $(HDR)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(SANITIZE) $(WARN) -fPIC -shared -Isrc -I$(LUA_INC) $(CURL_INC:%=-I%) $(SRC) -o $@ $(LIBS)

# MODKIE_TEST_LUA: the Lua the specs start bin/modkie (emulator, CLI) with.
# The OpenResty specs need nginx's Lua module and the LuaJIT build: test-openresty.
# The #browser spec (the review page in headless Chromium) runs here, once:
# not on the other Luas, nor under the sanitizers (Chromium would inherit them).
EXCLUDE_TAGS ?= openresty
test: test-deps $(CORE) $(HOST)
	MODKIE_TEST_LUA=$(LUA) $(BUSTED) --exclude-tags=$(EXCLUDE_TAGS) $(BUSTED_ARGS) $(SPECS)

# examples/openresty/nginx.conf in a real nginx (Debian's, with its LuaJIT Lua module)
test-openresty: test-deps $(CORE)
	@tools/deps luas openresty
	$(MAKE) --no-print-directory core LUA_INC=/usr/include/luajit-2.1 BUILD=build/luajit
	MODKIE_TEST_LUA=$(LUA) $(BUSTED) --tags=openresty $(BUSTED_ARGS) spec/openresty_spec.lua

# The suite on every Lua: 5.1, 5.2, 5.3, 5.4 and LuaJIT (OpenResty's fork, the
# one Debian's nginx Lua module runs), each with the C core built for it. The
# long-running specs (#slow: the 500-job fault rounds, the SIGKILL batches)
# and the #browser spec run on 5.4; the other Luas run everything else. The
# #shared specs (several processes on one account: they wait on its rate
# windows) run on 5.4 beside the other Luas.
test-all: test-deps
	@tools/deps luas
	$(MAKE) --no-print-directory test LUA=lua5.4 LUA_VERSION=5.4 EXCLUDE_TAGS=openresty,shared
	@$(MAKE) --no-print-directory test-other-luas
	$(MAKE) --no-print-directory test-openresty

# 5.1, 5.2, 5.3 and LuaJIT at once, and the #shared specs on 5.4 beside them
# (tools/test-luas): the specs mostly wait on the emulator's job timelines,
# ~90 s of wall time for ~20 s of CPU each.
test-other-luas: test-deps
	@MAKE="$(MAKE)" tools/test-luas

# The #shared specs alone: processes sharing an account's rate windows
# through a file and Redis (redis-server started by the specs).
test-shared: test-deps $(CORE)
	MODKIE_TEST_LUA=$(LUA) $(BUSTED) --tags=shared --exclude-tags=openresty $(BUSTED_ARGS) spec

lint: test-deps
	luacheck lua spec bin/modkie examples bench

demo: all
	@LUA=$(LUA) tools/demo.sh

install: all install-lib install-mock
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 755 bin/modkie $(DESTDIR)$(PREFIX)/bin/modkie

# the C module and the Lua modules but the emulator's: the modkie rock
# (luarocks installs bin/modkie itself)
install-lib: $(CORE)
	install -d $(DESTDIR)$(INSTALL_LMOD)/modkie $(DESTDIR)$(INSTALL_CMOD)/modkie
	install -m 644 $(CORE) $(DESTDIR)$(INSTALL_CMOD)/modkie/core.so
	cd lua && for f in modkie/*.lua modkie/*/*.lua; do [ -f "$$f" ] || continue; \
	  case $$f in modkie/mock/*) continue ;; esac; \
	  install -d $(DESTDIR)$(INSTALL_LMOD)/$$(dirname $$f); install -m 644 $$f $(DESTDIR)$(INSTALL_LMOD)/$$f; done

# the emulator's Lua modules (lua/modkie/mock/): the modkie-mock rock
install-mock:
	install -d $(DESTDIR)$(INSTALL_LMOD)/modkie/mock
	for f in lua/modkie/mock/*.lua; do install -m 644 $$f $(DESTDIR)$(INSTALL_LMOD)/modkie/mock/; done

clean:
	rm -rf build

# The whole spec suite with the C core built under AddressSanitizer and
# UndefinedBehaviorSanitizer (with float-cast-overflow, which gcc's "undefined"
# leaves out: a number from Lua cast to an integer out of range). --cpath: the
# instrumented core, not the plain one .busted names first. lua5.4 itself is not instrumented, so the
# sanitizer runtimes are preloaded; any report fails the run.
ASAN_BUILD = build/asan
ASAN_RT = $(shell $(CC) -print-file-name=libasan.so) $(shell $(CC) -print-file-name=libubsan.so)
NODLCLOSE = build/nodlclose.so
$(NODLCLOSE): tools/nodlclose.c
	@mkdir -p $(dir $@)
	$(CC) -O2 -fPIC -shared $< -o $@

asan-core:
	$(MAKE) --no-print-directory core BUILD=$(ASAN_BUILD) CFLAGS="-O1 -g -fno-omit-frame-pointer" \
	  SANITIZE="-fsanitize=address,undefined,float-cast-overflow -fno-sanitize-recover=undefined,float-cast-overflow"

asan: test-deps $(NODLCLOSE) asan-core
	LUA_CPATH="$(CURDIR)/$(ASAN_BUILD)/?.so;;" LD_PRELOAD="$(ASAN_RT) $(CURDIR)/$(NODLCLOSE)" \
	  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:exitcode=66 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  MODKIE_TEST_LUA=$(LUA) $(TIMEOUT) $(LUA) /usr/bin/busted --ignore-lua --cpath="$(CURDIR)/$(ASAN_BUILD)/?.so;" \
	  --exclude-tags=$(EXCLUDE_TAGS),browser $(BUSTED_ARGS) $(SPECS)

# The spec suite's C paths under valgrind memcheck: no invalid access, no
# definite leak. The emulator processes the specs start are not traced.
valgrind: test-deps $(CORE) $(NODLCLOSE)
	@tools/deps check
	LD_PRELOAD=$(CURDIR)/$(NODLCLOSE) $(TIMEOUT) valgrind --quiet --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite \
	  --show-leak-kinds=definite --trace-children=no \
	  $(LUA) /usr/bin/busted --ignore-lua --exclude-tags=$(EXCLUDE_TAGS),browser $(BUSTED_ARGS) $(VALGRIND_SPECS)

-include fuzz/fuzz.mk
-include bench/bench.mk
