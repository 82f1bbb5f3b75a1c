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
REGRESS_PORT ?= 58432

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
	PG_CONFIG=$(PG_CONFIG) $(srcdir)/test/pgtap/run.sh
