/*
 * counters.c
 *		The table of per-role connection counters in shared memory: for
 *		every role with at least one counted connection, how many are
 *		logged in as it (own) and how many as it or its members (total).
 *
 * Every login charges, and every exit gives back, one entry per role it is
 * counted for: a user in 200 groups touches 201 entries twice.  So the
 * table is built for that: open addressing with linear probing over a
 * power-of-two array of at least 4/3 connmgr.max_tracked_roles entries, so
 * that it is never more than three quarters full; a lookup hashes the OID
 * once and usually reads one cache line.  An entry is removed as soon as
 * both its counts are zero, by shifting the entries of its probe run back
 * (no tombstones), so the table holds only roles that are counted now.
 * Entries move when others are removed: never keep a pointer to one beyond
 * the current acquisition of the lock.
 *
 * Locking rules: the caller holds connmgr's LWLock (shmem.c), exclusively
 * to enter, change or remove entries, at least shared to read them.
 * Nothing here raises an error.
 */
#include "postgres.h"

#include "common/hashfn.h"
#include "port/pg_bitutils.h"
#include "storage/shmem.h"

#include "connmgr.h"

typedef struct CounterTable
{
	uint32		mask;			/* number of places - 1 */
	int			used;
	ConnmgrCounter places[FLEXIBLE_ARRAY_MEMBER];	/* roleid 0: empty */
} CounterTable;

static CounterTable *table = NULL;

static uint32
number_of_places(void)
{
	uint32		wanted = (uint32) connmgr_max_tracked_roles +
		(uint32) connmgr_max_tracked_roles / 3 + 1;

	return pg_nextpower2_32(wanted);
}

Size
connmgr_counters_shmem_size(void)
{
	return add_size(offsetof(CounterTable, places),
					mul_size(number_of_places(), sizeof(ConnmgrCounter)));
}

/* At shared memory startup, with AddinShmemInitLock held. */
void
connmgr_counters_shmem_init(void)
{
	bool		found;

	table = ShmemInitStruct("connmgr role counters",
							connmgr_counters_shmem_size(), &found);
	if (!found)
	{
		memset(table, 0, connmgr_counters_shmem_size());
		table->mask = number_of_places() - 1;
	}
}

static inline uint32
home_of(Oid role)
{
	return murmurhash32((uint32) role) & table->mask;
}

/* The place of role's entry, or of the empty place that ends its run. */
static uint32
probe(Oid role)
{
	uint32		i = home_of(role);

	while (table->places[i].roleid != InvalidOid &&
		   table->places[i].roleid != role)
		i = (i + 1) & table->mask;
	return i;
}

/* Lock held.  Role's entry, or NULL when no connection is counted for it. */
ConnmgrCounter *
connmgr_counter_find(Oid role)
{
	ConnmgrCounter *place = &table->places[probe(role)];

	return place->roleid == role ? place : NULL;
}

/*
 * Lock held exclusively.  Role's entry, added with zero counts if it had
 * none; NULL if adding it would exceed connmgr.max_tracked_roles.
 */
static ConnmgrCounter *
enter(Oid role)
{
	ConnmgrCounter *place = &table->places[probe(role)];

	if (place->roleid == role)
		return place;
	if (table->used >= connmgr_max_tracked_roles)
		return NULL;
	place->roleid = role;
	place->own = place->total = 0;
	table->used++;
	return place;
}

/*
 * Lock held exclusively.  Remove entry if nothing is counted in it any
 * more, moving back the entries after it in its probe run that would
 * otherwise no longer be found from their home place.
 */
static void
forget_if_unused(ConnmgrCounter *entry)
{
	uint32		hole = entry - table->places;
	uint32		next = hole;

	if (entry->own > 0 || entry->total > 0)
		return;
	for (;;)
	{
		uint32		home;

		next = (next + 1) & table->mask;
		if (table->places[next].roleid == InvalidOid)
			break;
		home = home_of(table->places[next].roleid);
		/* may it move back to the hole: is its home not in (hole, next]? */
		if (((next - home) & table->mask) >= ((next - hole) & table->mask))
		{
			table->places[hole] = table->places[next];
			hole = next;
		}
	}
	table->places[hole].roleid = InvalidOid;
	table->used--;
}

/*
 * Lock held exclusively.  The entry of each of roles, added where missing,
 * into entries[]; one the table has no room for is NULL.  Returns whether
 * every role has one.  The pointers hold until an entry is removed: use
 * them before connmgr_counters_release() or _forget_unused(), and before
 * releasing the lock.
 */
bool
connmgr_counters_enter(const Oid *roles, int nroles, ConnmgrCounter **entries)
{
	bool		all = true;

	for (int i = 0; i < nroles; i++)
	{
		entries[i] = enter(roles[i]);
		all &= entries[i] != NULL;
	}
	return all;
}

/* Lock held exclusively.  Remove what connmgr_counters_enter() added for nothing. */
void
connmgr_counters_forget_unused(const Oid *roles, int nroles)
{
	for (int i = 0; i < nroles; i++)
	{
		ConnmgrCounter *entry = connmgr_counter_find(roles[i]);

		if (entry != NULL)
			forget_if_unused(entry);
	}
}

/*
 * Lock held exclusively.  Count one connection of user for each of roles
 * (user among them), through the entries connmgr_counters_enter() found.
 */
void
connmgr_counters_charge(Oid user, const Oid *roles, ConnmgrCounter **entries, int nroles)
{
	for (int i = 0; i < nroles; i++)
	{
		entries[i]->total++;
		if (roles[i] == user)
			entries[i]->own++;
	}
}

/*
 * Lock held exclusively.  Give back one connection of user that was
 * counted for each of roles (user among them).
 */
void
connmgr_counters_release(Oid user, const Oid *roles, int nroles)
{
	for (int i = 0; i < nroles; i++)
	{
		ConnmgrCounter *entry = connmgr_counter_find(roles[i]);

		if (entry == NULL)
			continue;
		entry->total--;
		if (roles[i] == user)
			entry->own--;
		forget_if_unused(entry);
	}
}

/* Lock held.  Copy at most max entries into buf; returns how many. */
int
connmgr_counter_copy(ConnmgrCounter *buf, int max)
{
	int			n = 0;

	for (uint32 i = 0; i <= table->mask && n < max; i++)
		if (table->places[i].roleid != InvalidOid)
			buf[n++] = table->places[i];
	return n;
}
