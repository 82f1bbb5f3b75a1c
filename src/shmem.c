/*
 * shmem.c
 *		Per-role connection counters in shared memory.
 *
 * For every role with at least one counted connection, a hash entry holds
 *	- own:   the connections logged in as that role, and
 *	- total: the connections of that role and of its members (as limits.c
 *	         follows memberships), as they stood when each connection
 *	         logged in.
 * Superusers' and replication connections are not counted.  Each backend
 * remembers locally which entries it charged and gives them back from a
 * before_shmem_exit callback, so every exit path (normal disconnect, FATAL
 * later in startup, termination, a vanished client) releases its slot.  A
 * crash restart re-creates shared memory, and with it empty counters.
 *
 * Locking rules:
 *	- One LWLock from our own tranche ("connmgr") protects the whole hash.
 *	- A login checks every limit and charges the counters under a single
 *	  exclusive acquisition, so concurrent logins can never overshoot a
 *	  limit, and two logins below it are never both refused.
 *	- Releasing takes the lock exclusively; the snapshot for the view takes
 *	  it shared.
 *	- Nothing that can ereport() runs while the lock is held: entries are
 *	  added with HASH_ENTER_NULL, buffers are allocated beforehand, and
 *	  messages are built by the callers after release.
 */
#include "postgres.h"

#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"

#include "connmgr.h"

typedef struct ConnmgrShared
{
	LWLock	   *lock;
} ConnmgrShared;

static ConnmgrShared *shared = NULL;
static HTAB *counters = NULL;

#if PG_VERSION_NUM >= 150000
static shmem_request_hook_type prev_shmem_request_hook = NULL;
#endif
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/* What this backend charged, to give back at exit. */
static Oid	charged_user = InvalidOid;
static Oid *charged_roles = NULL;
static int	n_charged_roles = 0;

static Size
shmem_size(void)
{
	return add_size(MAXALIGN(sizeof(ConnmgrShared)),
					hash_estimate_size(connmgr_max_tracked_roles,
									   sizeof(ConnmgrCounter)));
}

static void
request_shmem(void)
{
	RequestAddinShmemSpace(shmem_size());
	RequestNamedLWLockTranche("connmgr", 1);
}

#if PG_VERSION_NUM >= 150000
static void
connmgr_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	request_shmem();
}
#endif

static void
connmgr_shmem_startup(void)
{
	HASHCTL		info;
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	shared = ShmemInitStruct("connmgr", sizeof(ConnmgrShared), &found);
	if (!found)
		shared->lock = &(GetNamedLWLockTranche("connmgr"))->lock;

	memset(&info, 0, sizeof(info));
	info.keysize = sizeof(Oid);
	info.entrysize = sizeof(ConnmgrCounter);
	counters = ShmemInitHash("connmgr role counters",
							 connmgr_max_tracked_roles,
							 connmgr_max_tracked_roles,
							 &info, HASH_ELEM | HASH_BLOBS);
	LWLockRelease(AddinShmemInitLock);
}

/* Called from _PG_init, in the postmaster. */
void
connmgr_install_shmem_hooks(void)
{
#if PG_VERSION_NUM >= 150000
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = connmgr_shmem_request;
#else
	request_shmem();
#endif
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = connmgr_shmem_startup;
}

/* Lock held exclusively.  Never raises an error. */
static void
uncharge(Oid user, const Oid *roles, int nroles)
{
	for (int i = 0; i < nroles; i++)
	{
		ConnmgrCounter *entry = hash_search(counters, &roles[i], HASH_FIND, NULL);

		if (entry == NULL)
			continue;
		entry->total--;
		if (roles[i] == user)
			entry->own--;
		if (entry->total <= 0 && entry->own <= 0)
			hash_search(counters, &roles[i], HASH_REMOVE, NULL);
	}
}

/*
 * Lock held exclusively.  Charge one connection of user, whose total is
 * counted for each of roles (user itself among them).  Returns false,
 * with nothing charged, if a new entry would exceed
 * connmgr.max_tracked_roles (or shared memory ran out).
 */
static bool
charge(Oid user, const Oid *roles, int nroles)
{
	for (int i = 0; i < nroles; i++)
	{
		bool		found = true;
		ConnmgrCounter *entry = hash_search(counters, &roles[i], HASH_FIND, NULL);

		if (entry == NULL &&
			hash_get_num_entries(counters) < connmgr_max_tracked_roles)
			entry = hash_search(counters, &roles[i], HASH_ENTER_NULL, &found);
		if (entry == NULL)
		{
			uncharge(user, roles, i);
			return false;
		}
		if (!found)
			entry->own = entry->total = 0;
		entry->total++;
		if (roles[i] == user)
			entry->own++;
	}
	return true;
}

static int
current_count(const ConnmgrCheck *check)
{
	ConnmgrCounter *entry = hash_search(counters, &check->roleid, HASH_FIND, NULL);

	if (entry == NULL)
		return 0;
	return check->own ? entry->own : entry->total;
}

static void
release_at_exit(int code, Datum arg)
{
	if (n_charged_roles == 0)
		return;
	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	uncharge(charged_user, charged_roles, n_charged_roles);
	LWLockRelease(shared->lock);
	n_charged_roles = 0;
}

/*
 * Check every limit in checks[] and, if no blocking one is reached, count
 * this backend's connection for user and for each of roles (which must
 * include user), all under one exclusive lock.  Each check's 'current' is
 * set to the count seen; 'reached' tells whether it was at its limit.
 * Non-blocking checks (log-only policies, enforcement off) never stop the
 * claim.  A backend claims at most once.
 */
ConnmgrClaimResult
connmgr_claim(Oid user, const Oid *roles, int nroles,
			  ConnmgrCheck *checks, int nchecks)
{
	static bool exit_callback_registered = false;
	Oid		   *saved;
	bool		blocked = false;
	bool		charged = false;

	if (shared == NULL || n_charged_roles > 0 || nroles == 0)
		return CLAIM_NOT_COUNTED;

	/*
	 * Register the release and allocate before taking the lock: nothing may
	 * fail while it is held, nor between charging and being able to give
	 * the charge back.
	 */
	if (!exit_callback_registered)
	{
		before_shmem_exit(release_at_exit, (Datum) 0);
		exit_callback_registered = true;
	}
	saved = MemoryContextAlloc(TopMemoryContext, sizeof(Oid) * nroles);
	memcpy(saved, roles, sizeof(Oid) * nroles);

	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	for (int i = 0; i < nchecks; i++)
	{
		checks[i].current = current_count(&checks[i]);
		checks[i].reached = checks[i].current >= checks[i].limit;
		blocked |= checks[i].reached && checks[i].blocking;
	}
	if (!blocked)
		charged = charge(user, saved, nroles);
	LWLockRelease(shared->lock);

	if (!charged)
	{
		pfree(saved);
		return blocked ? CLAIM_BLOCKED : CLAIM_NOT_COUNTED;
	}
	charged_user = user;
	charged_roles = saved;
	n_charged_roles = nroles;
	return CLAIM_ADMITTED;
}

/*
 * Copy the counters into buf (room for connmgr_max_tracked_roles entries);
 * returns how many were copied.
 */
int
connmgr_counter_snapshot(ConnmgrCounter *buf)
{
	HASH_SEQ_STATUS seq;
	ConnmgrCounter *entry;
	int			n = 0;

	if (shared == NULL)
		return 0;
	LWLockAcquire(shared->lock, LW_SHARED);
	hash_seq_init(&seq, counters);
	while ((entry = hash_seq_search(&seq)) != NULL)
	{
		if (n >= connmgr_max_tracked_roles)
		{
			hash_seq_term(&seq);
			break;
		}
		buf[n++] = *entry;
	}
	LWLockRelease(shared->lock);
	return n;
}
