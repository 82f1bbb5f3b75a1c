/*
 * cache.c
 *		A cache in shared memory of what a login needs: for a login role,
 *		the roles its connection is counted for and the limits that apply
 *		to it, as limits.c resolves them from the catalogs.  A login whose
 *		answer is cached reads no catalog and needs no subtransaction.
 *
 * Never stale: a login that starts after a commit has returned is judged
 * by it, whatever the commit path and whichever database it ran in.  One
 * generation number covers the whole cache; an entry is used only by a
 * login that read the generation it was filled under.  Two rules:
 *	- A commit that changes what an answer depends on bumps the generation
 *	  after it became visible to every snapshot and queued its invalidation
 *	  messages, and before it returns.
 *	- A login reads the generation first, then takes in the invalidations
 *	  queued so far and drops its catalog snapshot; whatever it then reads
 *	  from the catalogs (syscaches included) is at least as new as every
 *	  commit that bumped the generation before it read it.
 * So an entry filled under generation g holds the rules of every commit
 * whose bump made g or an earlier value, and a login that reads g after a
 * commit's bump finds only such entries.  Entries filled while a change was
 * not yet visible (between PREPARE and COMMIT PREPARED, or while a commit
 * waits for a synchronous standby: RecordTransactionCommit waits before
 * ProcArrayEndTransaction) were filled under an older generation and are
 * never used again.  A bump before the commit became visible would not do:
 * a login in between would fill an entry from the old catalogs under the
 * new generation.
 *
 * Where the bump comes from:
 *	- a transaction whose invalidation messages, as it commits, include
 *	  pg_authid's or pg_auth_members' catalog caches (role DDL of every
 *	  kind, DROP OWNED, direct catalog updates, and connmgr policy labels,
 *	  which invalidate the role's pg_authid entry because pg_shseclabel has
 *	  no syscache) is noted at XACT_EVENT_PRE_COMMIT and bumps from a
 *	  resource-release callback at the end of the transaction, which runs
 *	  after ProcArrayEndTransaction and AtEOXact_Inval;
 *	- COMMIT PREPARED: a prepared transaction runs no callback when it is
 *	  committed; FinishPreparedTransaction makes it visible and queues its
 *	  invalidations within the statement, so hooks.c notes the statement
 *	  and its own transaction bumps at its end.  Which changes the prepared
 *	  transaction holds is not known then, so every COMMIT PREPARED bumps.
 * A noted transaction that aborts bumps too, which is harmless; so does
 * one ended by FATAL (the backend aborts it on its way out), and interrupts
 * are held from ProcArrayEndTransaction to the callback.  A backend that
 * crashes in between takes the server through crash recovery, which starts
 * with an empty cache.  Other backends need not act when they read the
 * invalidations: the committing backend bumped for all of them.
 *
 * A hot standby does not use the cache: its startup process replays
 * invalidations only for the backends running at the time, and nothing
 * bumps the generation there.  Its logins read the catalogs.
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
#include "storage/sinval.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"
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

/* Must this transaction bump the generation when it ends? */
static bool bump_at_end = false;

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

/*
 * The generation, read by a login before anything else it needs for its
 * answer; then this backend's catalog caches are brought up to date, so
 * that what the login reads from the catalogs is at least as new as every
 * commit that bumped the generation before.
 */
uint64
connmgr_cache_generation(void)
{
	uint64		generation;

	if (cache == NULL)
		return 0;
	generation = pg_atomic_read_u64(&cache->generation);
	pg_read_barrier();
	AcceptInvalidationMessages();
	InvalidateCatalogSnapshot();
	return generation;
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

/* Is the message an invalidation of pg_authid's or pg_auth_members' caches? */
static bool
invalidates_roles(const SharedInvalidationMessage *msg)
{
	/* A change of a tuple invalidates every catalog cache of its catalog. */
	return msg->id == AUTHOID || msg->id == AUTHMEMMEMROLE;
}

/* Does the committing transaction change roles, memberships or policies? */
static bool
commit_changes_roles(void)
{
	SharedInvalidationMessage *msgs;
	bool		relcache_init_file;
	int			n = xactGetCommittedInvalidationMessages(&msgs, &relcache_init_file);

	for (int i = 0; i < n; i++)
		if (invalidates_roles(&msgs[i]))
			return true;
	return false;
}

static void
note_role_changes(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_PRE_COMMIT && commit_changes_roles())
		bump_at_end = true;
}

/*
 * At the end of a top-level transaction: after its commit became visible
 * (after any wait for a synchronous standby) and its invalidations were
 * queued.
 */
static void
bump_after_commit(ResourceReleasePhase phase, bool isCommit, bool isTopLevel, void *arg)
{
	if (phase == RESOURCE_RELEASE_AFTER_LOCKS && isTopLevel && bump_at_end)
	{
		bump_at_end = false;
		bump_generation();
	}
}

/* This transaction runs COMMIT PREPARED: bump when it ends. */
void
connmgr_cache_note_commit_prepared(void)
{
	bump_at_end = true;
}

/*
 * This transaction changes the policy label of roleid: queue an
 * invalidation of the role's pg_authid cache entry, as ALTER ROLE would,
 * so that the commit bumps the generation.
 */
void
connmgr_cache_note_policy_change(Oid roleid)
{
	HeapTuple	tuple = SearchSysCacheCopy1(AUTHOID, ObjectIdGetDatum(roleid));

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
	RegisterXactCallback(note_role_changes, NULL);
	RegisterResourceReleaseCallback(bump_after_commit, NULL);
}
