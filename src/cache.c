/*
 * cache.c
 *		A cache in shared memory of what a login needs: for a login role,
 *		the roles its connection is counted for and the limits that apply
 *		to it, as limits.c resolves them from the catalogs.  A login whose
 *		answer is cached reads no catalog and needs no subtransaction.
 *
 * Never stale.  One generation number covers the whole cache; an entry is
 * used only while the generation is the one it was filled under, and a
 * login reads the generation before it reads any catalog.  The generation
 * is bumped
 *	- after every commit that changed pg_authid or pg_auth_members (a role's
 *	  attributes, name or memberships), by syscache callbacks, which every
 *	  backend runs when it processes the invalidation, the committing one
 *	  right after its commit became visible;
 *	- before such a commit becomes visible, by the committing backend, when
 *	  it ran role DDL (hooks.c) or wrote a connmgr policy label: a login in
 *	  between reads the new generation and then the new catalogs;
 *	- writing a policy label queues an invalidation of the role's pg_authid
 *	  cache entry, as ALTER ROLE would, so that the bump after commit comes
 *	  the same way (pg_shseclabel has no syscache of its own).
 * A hot standby does not use the cache: its startup process replays
 * invalidations only for the backends running at the time, and with none
 * running, nothing would tell the cache.  Its logins read the catalogs.
 * So a login is judged by the rules committed before it started, and a
 * login racing a change at worst rebuilds its entry.
 *
 * Storage: a hash of entries by role OID, and an arena of their roles and
 * checks, emptied as a whole by the first insert under a new generation.
 * connmgr.login_cache_size sizes both; an answer that does not fit is not
 * cached, and its logins read the catalogs (correct, only slower).
 *
 * Locking rules: connmgr's LWLock (shmem.c), shared to look up, exclusive
 * to insert; nothing here raises an error while holding it.  The
 * generation is an atomic.
 */
#include "postgres.h"

#include "access/table.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_authid.h"
#include "port/atomics.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/syscache.h"

#include "connmgr.h"

/* Bytes of arena per hash entry, when sizing the hash from the GUC. */
#define ARENA_BYTES_PER_ENTRY 256

typedef struct CacheEntry
{
	Oid			user;			/* hash key */
	uint64		generation;
	bool		enabled;		/* connmgr.enabled when filled */
	int			nroles;
	int			nchecks;
	Size		offset;			/* of the roles, then the checks, in the arena */
} CacheEntry;

typedef struct CacheShared
{
	pg_atomic_uint64 generation;
	uint64		arena_generation;	/* the generation the arena holds */
	Size		arena_used;
	char		arena[FLEXIBLE_ARRAY_MEMBER];
} CacheShared;

static CacheShared *cache = NULL;
static HTAB *entries = NULL;

/* Did this transaction change what a login's answer depends on? */
static bool changed_in_xact = false;
static bool xact_callback_registered = false;

static Size
arena_size(void)
{
	return (Size) connmgr_login_cache_size * 1024;
}

static long
max_entries(void)
{
	return Max(arena_size() / ARENA_BYTES_PER_ENTRY, 16);
}

Size
connmgr_cache_shmem_size(void)
{
	return add_size(MAXALIGN(add_size(offsetof(CacheShared, arena), arena_size())),
					hash_estimate_size(max_entries(), sizeof(CacheEntry)));
}

/* Called from shmem.c's startup hook, AddinShmemInitLock held. */
void
connmgr_cache_shmem_init(void)
{
	HASHCTL		info;
	bool		found;

	cache = ShmemInitStruct("connmgr login cache",
							add_size(offsetof(CacheShared, arena), arena_size()), &found);
	if (!found)
	{
		pg_atomic_init_u64(&cache->generation, 1);
		cache->arena_generation = 0;
		cache->arena_used = 0;
	}
	memset(&info, 0, sizeof(info));
	info.keysize = sizeof(Oid);
	info.entrysize = sizeof(CacheEntry);
	entries = ShmemInitHash("connmgr login cache entries", max_entries(), max_entries(),
							&info, HASH_ELEM | HASH_BLOBS);
}

uint64
connmgr_cache_generation(void)
{
	return cache ? pg_atomic_read_u64(&cache->generation) : 0;
}

static void
bump_generation(void)
{
	if (cache != NULL)
		pg_atomic_fetch_add_u64(&cache->generation, 1);
}

/* Lock held.  The entry of user filled under generation, or NULL. */
static CacheEntry *
valid_entry(Oid user, uint64 generation, bool enabled)
{
	CacheEntry *entry = hash_search(entries, &user, HASH_FIND, NULL);

	if (entry == NULL || entry->generation != generation ||
		cache->arena_generation != generation || entry->enabled != enabled)
		return NULL;
	return entry;
}

/*
 * The cached answer for user under generation: palloc'd copies of its
 * roles and checks.  False if there is none.
 */
bool
connmgr_cache_lookup(Oid user, uint64 generation, bool enabled,
					 Oid **roles, int *nroles, ConnmgrCheck **checks, int *nchecks)
{
	CacheEntry *entry;

	if (cache == NULL || connmgr_login_cache_size == 0 || RecoveryInProgress())
		return false;

	/* Learn the sizes, allocate without the lock, then copy. */
	LWLockAcquire(connmgr_lock(), LW_SHARED);
	entry = valid_entry(user, generation, enabled);
	*nroles = entry ? entry->nroles : 0;
	*nchecks = entry ? entry->nchecks : 0;
	LWLockRelease(connmgr_lock());
	if (entry == NULL)
		return false;
	*roles = palloc(sizeof(Oid) * *nroles);
	*checks = palloc(sizeof(ConnmgrCheck) * Max(*nchecks, 1));

	LWLockAcquire(connmgr_lock(), LW_SHARED);
	entry = valid_entry(user, generation, enabled);
	if (entry != NULL && entry->nroles == *nroles && entry->nchecks == *nchecks)
	{
		memcpy(*roles, cache->arena + entry->offset, sizeof(Oid) * *nroles);
		memcpy(*checks, cache->arena + entry->offset + MAXALIGN(sizeof(Oid) * *nroles),
			   sizeof(ConnmgrCheck) * *nchecks);
	}
	else
		entry = NULL;
	LWLockRelease(connmgr_lock());
	return entry != NULL;
}

/* Lock held exclusively: forget every entry. */
static void
empty_cache(uint64 generation)
{
	HASH_SEQ_STATUS seq;
	CacheEntry *entry;

	hash_seq_init(&seq, entries);
	while ((entry = hash_seq_search(&seq)) != NULL)
		hash_search(entries, &entry->user, HASH_REMOVE, NULL);
	cache->arena_generation = generation;
	cache->arena_used = 0;
}

/*
 * Remember the answer for user, read from the catalogs after generation
 * was read.  Nothing is stored if the generation has moved on meanwhile or
 * the cache is full.
 */
void
connmgr_cache_store(Oid user, uint64 generation, bool enabled,
					const Oid *roles, int nroles, const ConnmgrCheck *checks, int nchecks)
{
	Size		need = MAXALIGN(sizeof(Oid) * nroles) + sizeof(ConnmgrCheck) * nchecks;
	CacheEntry *entry;
	bool		found;

	if (cache == NULL || connmgr_login_cache_size == 0 || RecoveryInProgress())
		return;
	LWLockAcquire(connmgr_lock(), LW_EXCLUSIVE);
	if (generation == pg_atomic_read_u64(&cache->generation))
	{
		if (cache->arena_generation != generation)
			empty_cache(generation);
		if (cache->arena_used + MAXALIGN(need) <= arena_size() &&
			(entry = hash_search(entries, &user, HASH_ENTER_NULL, &found)) != NULL)
		{
			entry->generation = generation;
			entry->enabled = enabled;
			entry->nroles = nroles;
			entry->nchecks = nchecks;
			entry->offset = cache->arena_used;
			memcpy(cache->arena + entry->offset, roles, sizeof(Oid) * nroles);
			memcpy(cache->arena + entry->offset + MAXALIGN(sizeof(Oid) * nroles),
				   checks, sizeof(ConnmgrCheck) * nchecks);
			cache->arena_used += MAXALIGN(need);
		}
	}
	LWLockRelease(connmgr_lock());
}

/* Syscache callback on pg_authid and pg_auth_members. */
static void
invalidate_on_catalog_change(Datum arg, int cacheid, uint32 hashvalue)
{
	bump_generation();
}

/* Before this transaction's changes become visible, and after. */
static void
invalidate_at_commit(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
		case XACT_EVENT_PARALLEL_PRE_COMMIT:
		case XACT_EVENT_PRE_PREPARE:
			if (changed_in_xact)
				bump_generation();
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			changed_in_xact = false;
			break;
	}
}

/*
 * This transaction changes roles or memberships: bump the generation once
 * more just before its commit becomes visible.
 */
void
connmgr_cache_note_role_change(void)
{
	if (!xact_callback_registered)
	{
		RegisterXactCallback(invalidate_at_commit, NULL);
		xact_callback_registered = true;
	}
	changed_in_xact = true;
}

/*
 * This transaction changes the policy label of roleid: as for role DDL,
 * and queue an invalidation of the role's pg_authid cache entry, so that
 * every backend and every hot standby bumps the generation after commit.
 */
void
connmgr_cache_note_policy_change(Oid roleid)
{
	HeapTuple	tuple = SearchSysCacheCopy1(AUTHOID, ObjectIdGetDatum(roleid));

	connmgr_cache_note_role_change();
	if (HeapTupleIsValid(tuple))
	{
		Relation	rel = table_open(AuthIdRelationId, AccessShareLock);

		CacheInvalidateHeapTuple(rel, tuple, NULL);
		table_close(rel, AccessShareLock);
		heap_freetuple(tuple);
	}
}

/* Called from _PG_init: every backend inherits the callbacks. */
void
connmgr_cache_register_callbacks(void)
{
	CacheRegisterSyscacheCallback(AUTHOID, invalidate_on_catalog_change, (Datum) 0);
	CacheRegisterSyscacheCallback(AUTHMEMMEMROLE, invalidate_on_catalog_change, (Datum) 0);
	CacheRegisterSyscacheCallback(AUTHMEMROLEMEM, invalidate_on_catalog_change, (Datum) 0);
}
