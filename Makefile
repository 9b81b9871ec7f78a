# modkie: `make demo` and `make test` install what is missing (Debian packages) themselves.
LUA ?= lua5.4
LUA_VERSION ?= 5.4
LUA_INC ?= /usr/include/lua$(LUA_VERSION)
BUILD ?= build/lua$(LUA_VERSION)
CC ?= gcc
CFLAGS ?= -O2 -g
WARN = -std=c99 -D_POSIX_C_SOURCE=200809L -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes
SANITIZE ?=
LIBS = -lcurl
PREFIX ?= /usr/local
INSTALL_LMOD ?= $(PREFIX)/share/lua/$(LUA_VERSION)
INSTALL_CMOD ?= $(PREFIX)/lib/lua/$(LUA_VERSION)

SRC = $(wildcard src/*.c)
HDR = $(wildcard src/*.h)
LUA_SRC = $(wildcard lua/modkie/*.lua lua/modkie/*/*.lua)
CORE = $(BUILD)/modkie/core.so

export LUA_PATH := $(CURDIR)/lua/?.lua;$(CURDIR)/lua/?/init.lua;;
export LUA_CPATH := $(CURDIR)/$(BUILD)/?.so;;
BUSTED = busted --lua=$(LUA)

.PHONY: all core deps test-deps test lint demo install install-lib clean bench

all: deps $(CORE)

# the C module alone, no package checks (luarocks builds this)
core: $(CORE)

deps:
	@tools/deps build

test-deps:
	@tools/deps test

$(CORE): $(SRC) $(HDR)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(SANITIZE) $(WARN) -fPIC -shared -I$(LUA_INC) $(CURL_INC:%=-I%) $(SRC) -o $@ $(LIBS)

test: test-deps $(CORE)
	$(BUSTED) $(BUSTED_ARGS) spec

lint: test-deps
	luacheck lua spec bin/modkie examples bench

demo: all
	$(LUA) examples/demo.lua

install: all install-lib
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 755 bin/modkie $(DESTDIR)$(PREFIX)/bin/modkie

# the C module and the Lua modules (luarocks installs bin/modkie itself)
install-lib: $(CORE)
	install -d $(DESTDIR)$(INSTALL_LMOD)/modkie $(DESTDIR)$(INSTALL_CMOD)/modkie
	install -m 644 $(CORE) $(DESTDIR)$(INSTALL_CMOD)/modkie/core.so
	cd lua && for f in modkie/*.lua modkie/*/*.lua; do [ -f "$$f" ] || continue; \
	  install -d $(DESTDIR)$(INSTALL_LMOD)/$$(dirname $$f); install -m 644 $$f $(DESTDIR)$(INSTALL_LMOD)/$$f; done

clean:
	rm -rf build
