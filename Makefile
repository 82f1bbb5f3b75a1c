# connmgr: PGXS build.  "make installcheck" runs pg_regress (sql/, expected/)
# in a throwaway instance of its own and the TAP tests (test/t/); the pgTAP
# suite runs with "make pgtapcheck".  test/run.sh runs everything.

MODULE_big = connmgr
OBJS = \
	src/connmgr.o \
	src/srf.o \
	src/backends.o \
	src/permissions.o \
	src/terminate.o \
	src/classdb_api.o \
	src/shmem.o \
	src/counters.o \
	src/policy.o \
	src/limits.o \
	src/hooks.o \
	src/limits_api.o \
	src/names.o \
	src/admin_api.o \
	src/stats.o \
	src/stats_api.o \
	src/cache.o \
	src/enforce_api.o \
	src/idle.o

EXTENSION = connmgr
DATA = connmgr--1.0.sql
PGFILEDESC = "connmgr - connection management"

REGRESS = classdb_api limits_api
REGRESS_OPTS = --temp-instance=tmp_check_regress \
	--temp-config=$(srcdir)/test/regress.conf --port=$(REGRESS_PORT)
# The ports of pg_regress's instance and of the pgTAP cluster: base + 2 and
# + 3, where the scripts' other servers also are (see test/lib.sh).
CONNMGR_PORT_BASE ?= 58430
REGRESS_PORT ?= $(shell echo $$(($(CONNMGR_PORT_BASE) + 2)))
PGTAP_PORT ?= $(shell echo $$(($(CONNMGR_PORT_BASE) + 3)))

TAP_TESTS = 1
PROVE_TESTS = test/t/*.pl

PG_CFLAGS = -Wall -Wextra -Wno-unused-parameter $(if $(WERROR),-Werror)

EXTRA_CLEAN = tmp_check_regress

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# every object depends on the shared header
$(OBJS): src/connmgr.h src/compat.h

# after the include: Makefile.global sets PROVE_FLAGS itself
PROVE_FLAGS = -I $(srcdir)/test/perl

.PHONY: pgtapcheck
pgtapcheck:
	PG_CONFIG=$(PG_CONFIG) PGTAP_PORT=$(PGTAP_PORT) $(srcdir)/test/pgtap/run.sh

# Release tarballs for PGXN and packagers: connmgr-VERSION.tar.gz and .zip
# of the committed HEAD (git archive; .gitattributes says what stays out),
# VERSION being META.json's release version.
DIST_VERSION = $(shell sed -n 's/^   "version": "\(.*\)",$$/\1/p' $(srcdir)/META.json)
DIST_NAME = $(EXTENSION)-$(DIST_VERSION)

.PHONY: dist
dist:
	$(if $(DIST_VERSION),,$(error make dist: no top-level "version" in META.json))
	@git diff --quiet HEAD || echo "make dist: uncommitted changes are not in $(DIST_NAME): it packs HEAD" >&2
	git archive --format=tar.gz --prefix=$(DIST_NAME)/ -o $(DIST_NAME).tar.gz HEAD
	git archive --format=zip --prefix=$(DIST_NAME)/ -o $(DIST_NAME).zip HEAD
