/*
 * shmem.c
 *		Connection state in shared memory: one counter entry per role, and
 *		one slot per client backend that says who it is, what it was
 *		charged for, and why it is being terminated.
 *
 * For every role with at least one counted connection, an entry of the
 * counter table (counters.c) holds
 *	- own:   the connections logged in as that role, and
 *	- total: the connections of that role and of its members (as limits.c
 *	         follows memberships), as they stood when each connection
 *	         logged in.
 * Each client backend fills its slot (indexed by its PGPROC number) when
 * its login is admitted, under the exclusive lock the admission takes
 * anyway: its pid and start time (its identity, as in the connection id)
 * and the server address the client connected to.  A
 * counted backend adds its user, the roles it was charged for (the first
 * CONNMGR_SLOT_ROLES of them), and, once a login has chosen it as an
 * eviction victim, that login's pid: another backend's login reads the
 * slots to evict only connections whose exit frees the limits that block
 * it, and to make sure that one victim is evicted by one login only.
 * Whoever terminates a connection through connmgr first writes into its
 * slot who did it and why, matched on pid and start time, so the note can
 * only reach that very session; the victim adds it to its own FATAL.
 *
 * Superusers' and physical replication connections are not counted.  Each
 * backend remembers locally which entries it charged and gives them back
 * from a before_shmem_exit callback, so every exit path (normal
 * disconnect, FATAL later in startup, termination, a vanished client)
 * releases its slot.  A crash restart re-creates shared memory, and with
 * it empty counters.
 *
 * Locking rules:
 *	- One LWLock from our own tranche ("connmgr") protects the hash and the
 *	  slots.
 *	- A login checks every limit and charges the counters under a single
 *	  exclusive acquisition, so concurrent logins can never overshoot a
 *	  limit, and two logins below it are never both refused.
 *	- Admitting, releasing, reserving or sparing a victim and writing an
 *	  ending note take the lock exclusively (a login takes it once);
 *	  snapshots for the views and reading one's own note take it shared.
 *	- A connection that gave back a charge broadcasts slot_released, after
 *	  releasing the lock, to wake logins waiting for a slot; so does a
 *	  login that leaves the queue of a limit with on_limit wait (its place
 *	  in the queue, a ticket, is in its slot).
 *	- Nothing that can ereport() runs while the lock is held: adding a
 *	  counter fails softly when the table is full, buffers are allocated
 *	  beforehand, and messages are built by the callers after release.
 */
#include "postgres.h"

#include "libpq/libpq-be.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/condition_variable.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/memutils.h"

#include "connmgr.h"
#include "compat.h"


typedef struct ConnmgrSlot
{
	int			pid;			/* 0: free */
	TimestampTz started;		/* with pid, the backend's identity */
	SockAddr	server_addr;	/* where the client connected to */
	Oid			user;			/* InvalidOid: not counted */
	int			evicted_by;		/* pid of the login evicting it, or 0 */
	int			nroles;			/* roles charged, may exceed the array */
	Oid			roles[CONNMGR_SLOT_ROLES];
	ConnmgrEnding ending;		/* why it is being terminated */
	Oid			waiting_for;	/* a login waiting for a slot of this role */
	uint64		ticket;			/* its place in that queue; 0: the grace */
	ConnmgrWaitingLogin waiting;	/* who waits, shown while waiting_for is set */
} ConnmgrSlot;

typedef struct ConnmgrShared
{
	LWLock	   *lock;
	ConditionVariable slot_released;	/* a counted connection has ended */
	uint64		next_ticket;	/* for logins that wait for a slot */
	ConnmgrSlot slots[FLEXIBLE_ARRAY_MEMBER];	/* MaxBackends of them */
} ConnmgrShared;

static ConnmgrShared *shared = NULL;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/* Has this backend registered (its exit callback, its server address)? */
static bool registered = false;
static SockAddr my_server_addr;

/* This login's place in a queue for a slot, or 0. */
static uint64 my_ticket = 0;

/* Was this backend's login admitted (and so counted as opened)? */
static bool admitted = false;

/* What this backend charged, to give back at exit. */
static Oid	charged_user = InvalidOid;
static Oid *charged_roles = NULL;
static int	n_charged_roles = 0;

static Size
shared_struct_size(void)
{
	return add_size(offsetof(ConnmgrShared, slots),
					mul_size(MaxBackends, sizeof(ConnmgrSlot)));
}

static void
connmgr_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(add_size(add_size(MAXALIGN(shared_struct_size()),
											 connmgr_counters_shmem_size()),
									add_size(connmgr_stats_shmem_size(),
											 connmgr_cache_shmem_size())));
	RequestNamedLWLockTranche("connmgr", 1);
}

static void
connmgr_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	shared = ShmemInitStruct("connmgr", shared_struct_size(), &found);
	if (!found)
	{
		memset(shared, 0, shared_struct_size());
		shared->lock = &(GetNamedLWLockTranche("connmgr"))->lock;
		ConditionVariableInit(&shared->slot_released);
	}

	connmgr_counters_shmem_init();
	connmgr_stats_shmem_init();
	connmgr_cache_shmem_init();
	LWLockRelease(AddinShmemInitLock);
}

/* connmgr's one LWLock (see the locking rules above). */
LWLock *
connmgr_lock(void)
{
	return shared->lock;
}

/*
 * Sleep until a counted connection ends, the client of this login goes
 * away (then exit), or timeout_ms have passed.  Call claim again after.
 */
void
connmgr_wait_for_release(long timeout_ms)
{
	int			events = WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH;
	pgsocket	sock = MyProcPort ? MyProcPort->sock : PGINVALID_SOCKET;

	if (sock != PGINVALID_SOCKET)
		events |= WL_SOCKET_CLOSED;
	ConditionVariablePrepareToSleep(&shared->slot_released);
	if (WaitLatchOrSocket(MyLatch, events, sock, Max(timeout_ms, 1),
						  PG_WAIT_EXTENSION) & WL_SOCKET_CLOSED)
		proc_exit(0);			/* the client gave up: nothing to admit */
	ResetLatch(MyLatch);
	ConditionVariableCancelSleep();
	CHECK_FOR_INTERRUPTS();
}

/* Called from _PG_init, in the postmaster. */
void
connmgr_install_shmem_hooks(void)
{
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = connmgr_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = connmgr_shmem_startup;
}

static int
count_in(const ConnmgrCounter *entry, bool own)
{
	if (entry == NULL)
		return 0;
	return own ? entry->own : entry->total;
}

/* Lock held exclusively.  The count a check reads, from the claim's entries. */
static int
checked_count(const ConnmgrCheck *check, const Oid *roles, int nroles,
			  ConnmgrCounter *const *entries)
{
	if (check->role_index >= 0 && check->role_index < nroles &&
		roles[check->role_index] == check->roleid)
		return count_in(entries[check->role_index], check->own);
	return count_in(connmgr_counter_find(check->roleid), check->own);
}

/*
 * Lock held exclusively: publish this admitted backend in its slot, with
 * its charge if it was counted (user valid), count it as opened and log
 * its connect event, so that the event log shows admissions in the order
 * they happened (the order a queue of waiting logins promises).
 */
static void
fill_my_slot(Oid user, const Oid *roles, int nroles)
{
	ConnmgrSlot *slot = &shared->slots[CONNMGR_MY_PROC_INDEX];

	memset(slot, 0, offsetof(ConnmgrSlot, roles));
	slot->pid = MyProcPid;
	slot->started = MyStartTimestamp;
	slot->server_addr = my_server_addr;
	slot->user = user;
	slot->nroles = nroles;
	if (nroles > 0)
		memcpy(slot->roles, roles, sizeof(Oid) * Min(nroles, CONNMGR_SLOT_ROLES));
	memset(&slot->ending, 0, sizeof(slot->ending));
	slot->waiting_for = InvalidOid;
	slot->ticket = 0;
	my_ticket = 0;
	connmgr_stats_count_locked(STAT_OPENED);
	connmgr_stats_event(EVENT_CONNECT, NULL);
	admitted = true;
}

/* Has this backend reserved an eviction victim (since it last spared)? */
static bool reserved_victims = false;

/*
 * Lock held exclusively: give back every victim this backend reserved.
 * Only a login that reserved one looks at the slots: touching all of them
 * would cost every exiting backend a page fault per page of slots.
 */
static void
spare_my_victims(void)
{
	if (!reserved_victims)
		return;
	for (int i = 0; i < MaxBackends; i++)
		if (shared->slots[i].evicted_by == MyProcPid)
			shared->slots[i].evicted_by = 0;
	reserved_victims = false;
}

static void
release_at_exit(int code, Datum arg)
{
	ConnmgrSlot *slot = &shared->slots[CONNMGR_MY_PROC_INDEX];
	bool		released = n_charged_roles > 0 || my_ticket != 0;

	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	slot->waiting_for = InvalidOid;
	slot->ticket = 0;
	my_ticket = 0;
	if (!admitted)
		slot->pid = 0;
	if (admitted)
	{
		/*
		 * Count and log the end before the slot is given back, so that the
		 * event log never shows a newcomer in before this one is out.
		 */
		if (slot->ending.kind == ENDING_EVICTION)
			connmgr_stats_count_locked(STAT_EVICTED);
		if (slot->ending.kind == ENDING_KILL)
			connmgr_stats_count_locked(STAT_TERMINATED);
		if (connmgr_ending_is_expiry(slot->ending.kind))
			connmgr_stats_count_locked(STAT_EXPIRED);
		connmgr_stats_count_locked(STAT_CLOSED);
		if (slot->ending.kind != ENDING_NONE)
			connmgr_stats_event(slot->ending.kind == ENDING_EVICTION ?
								EVENT_EVICT : EVENT_TERMINATE, &slot->ending);
		connmgr_stats_event(EVENT_DISCONNECT, NULL);
		memset(slot, 0, sizeof(ConnmgrSlot));
	}
	if (n_charged_roles > 0)
		connmgr_counters_release(charged_user, charged_roles, n_charged_roles);
	spare_my_victims();
	LWLockRelease(shared->lock);
	n_charged_roles = 0;
	if (released)
		ConditionVariableBroadcast(&shared->slot_released);
}

/*
 * Register this client backend once it has authenticated: where the client
 * connected to, and the exit callback that clears its slot and gives back
 * what it was charged, on every exit path.  Its slot is filled when its
 * login is admitted, under the lock that admission takes anyway.
 */
void
connmgr_register_backend(const SockAddr *server_addr)
{
	if (shared == NULL || registered)
		return;
	before_shmem_exit(release_at_exit, (Datum) 0);
	registered = true;
	if (server_addr)
		my_server_addr = *server_addr;
}

/*
 * Lock held.  Is another login waiting for a slot of role, ahead of this
 * one?  Slots of a limit with on_limit wait go first come first served:
 * a free slot belongs to the login that has waited longest.
 */
static bool
waits_before_me(Oid role)
{
	for (int i = 0; i < MaxBackends; i++)
	{
		const ConnmgrSlot *slot = &shared->slots[i];

		if (slot->waiting_for == role && slot->ticket != 0 &&
			(my_ticket == 0 || slot->ticket < my_ticket))
			return true;
	}
	return false;
}

/* Lock held.  How many logins wait in the queue of role, and of user. */
static void
count_waiting(Oid role, Oid user, int *for_role, int *of_user)
{
	*for_role = *of_user = 0;
	for (int i = 0; i < MaxBackends; i++)
	{
		const ConnmgrSlot *slot = &shared->slots[i];

		if (slot->ticket == 0 || !OidIsValid(slot->waiting_for))
			continue;
		if (slot->waiting_for == role)
			(*for_role)++;
		if (slot->waiting.user == user)
			(*of_user)++;
	}
}

/*
 * Show this login as waiting for a slot of who->role, from now until
 * connmgr_stop_waiting().  A queued login (on_limit wait) takes a ticket,
 * its place in the queue of that role, unless max_waiting logins already
 * wait there (WAIT_QUEUE_FULL) or max_per_user of its user's logins wait
 * anywhere (WAIT_USER_FULL); *waiting then says how many do.  A login in
 * its grace takes no ticket and is never refused.
 */
ConnmgrWaitStart
connmgr_start_waiting(const ConnmgrWaitingLogin *who, bool queued,
					  int max_waiting, int max_per_user, int *waiting)
{
	ConnmgrSlot *mine = &shared->slots[CONNMGR_MY_PROC_INDEX];
	ConnmgrWaitStart result = WAIT_STARTED;
	int			for_role;
	int			of_user;

	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	count_waiting(who->role, who->user, &for_role, &of_user);
	if (queued && for_role >= max_waiting)
	{
		result = WAIT_QUEUE_FULL;
		*waiting = for_role;
	}
	else if (queued && of_user >= max_per_user)
	{
		result = WAIT_USER_FULL;
		*waiting = of_user;
	}
	else
	{
		my_ticket = queued ? ++shared->next_ticket : 0;
		mine->pid = MyProcPid;
		mine->started = MyStartTimestamp;
		mine->waiting = *who;
		mine->waiting_for = who->role;
		mine->ticket = my_ticket;
	}
	LWLockRelease(shared->lock);
	return result;
}

/*
 * Move this queued login to the queue of role, keeping its place in line:
 * a login waits for the limit whose release can admit it.
 */
void
connmgr_wait_in(Oid role)
{
	ConnmgrSlot *mine = &shared->slots[CONNMGR_MY_PROC_INDEX];

	if (my_ticket == 0 || mine->waiting_for == role)
		return;
	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	mine->waiting_for = role;
	mine->waiting.role = role;
	LWLockRelease(shared->lock);
	ConditionVariableBroadcast(&shared->slot_released);
}

/* Is this queued login the one that came last of all that wait? */
bool
connmgr_last_in_line(void)
{
	bool		last = true;

	LWLockAcquire(shared->lock, LW_SHARED);
	for (int i = 0; i < MaxBackends && last; i++)
		last = shared->slots[i].ticket <= my_ticket;
	LWLockRelease(shared->lock);
	return last;
}

/*
 * Stop showing this login as waiting (admitted or giving up); if it had a
 * place in a queue, let the next in line try.
 */
void
connmgr_stop_waiting(void)
{
	ConnmgrSlot *mine = &shared->slots[CONNMGR_MY_PROC_INDEX];
	bool		queued = my_ticket != 0;

	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	mine->waiting_for = InvalidOid;
	mine->ticket = 0;
	if (!admitted)
		mine->pid = 0;
	my_ticket = 0;
	LWLockRelease(shared->lock);
	if (queued)
		ConditionVariableBroadcast(&shared->slot_released);
}

/*
 * Every login waiting for a slot now, for the connections view and the
 * kill functions: fills buf (room for MaxBackends) and returns how many.
 */
int
connmgr_waiting_logins(ConnmgrWaitingLogin *buf)
{
	int			n = 0;

	if (shared == NULL)
		return 0;
	LWLockAcquire(shared->lock, LW_SHARED);
	for (int i = 0; i < MaxBackends; i++)
		if (OidIsValid(shared->slots[i].waiting_for) && shared->slots[i].pid != 0)
			buf[n++] = shared->slots[i].waiting;
	LWLockRelease(shared->lock);
	return n;
}

/*
 * Check every limit in checks[] and, if no blocking one is reached, count
 * this backend's connection for user and for each of roles (which must
 * include user), all under one exclusive lock.  Each check's 'current' is
 * set to the count seen; 'reached' tells whether it was at its limit.
 * Non-blocking checks (log-only policies) never stop the claim.  A backend
 * claims at most once, after connmgr_register_backend().
 */
ConnmgrClaimResult
connmgr_claim(Oid user, const Oid *roles, int nroles,
			  ConnmgrCheck *checks, int nchecks)
{
	Oid		   *saved;
	ConnmgrCounter **entries;
	bool		countable;
	bool		blocked = false;

	if (shared == NULL || !registered || n_charged_roles > 0 || nroles == 0)
		return CLAIM_NOT_COUNTED;

	/*
	 * Allocate before taking the lock: nothing may fail while it is held,
	 * nor between charging and being able to give the charge back.
	 */
	saved = MemoryContextAlloc(TopMemoryContext, sizeof(Oid) * nroles);
	memcpy(saved, roles, sizeof(Oid) * nroles);
	entries = palloc(sizeof(ConnmgrCounter *) * nroles);

	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	countable = connmgr_counters_enter(saved, nroles, entries);
	for (int i = 0; i < nchecks; i++)
	{
		checks[i].current = checked_count(&checks[i], saved, nroles, entries);
		checks[i].reached = checks[i].current >= checks[i].limit ||
			(checks[i].action == ON_LIMIT_WAIT && waits_before_me(checks[i].roleid));
		blocked |= checks[i].reached && checks[i].blocking;
	}
	if (countable && !blocked)
	{
		connmgr_counters_charge(user, saved, entries, nroles);
		fill_my_slot(user, saved, nroles);
	}
	else
		connmgr_counters_forget_unused(saved, nroles);
	LWLockRelease(shared->lock);
	pfree(entries);

	if (!countable || blocked)
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
 * The login of this backend was admitted: publish it in its slot and count
 * it as opened, unless its claim already did (under the lock it held then).
 */
void
connmgr_login_admitted(void)
{
	if (shared == NULL || !registered || admitted)
		return;
	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	fill_my_slot(InvalidOid, NULL, 0);
	LWLockRelease(shared->lock);
}

/* Lock held.  Was the connection in slot charged for role? */
static bool
slot_charged_for(const ConnmgrSlot *slot, Oid role)
{
	for (int i = 0; i < Min(slot->nroles, CONNMGR_SLOT_ROLES); i++)
		if (slot->roles[i] == role)
			return true;
	return false;
}

/* Lock held.  The slot of the counted connection pid, or NULL. */
static ConnmgrSlot *
slot_of(int pid)
{
	for (int i = 0; i < MaxBackends; i++)
		if (shared->slots[i].pid == pid && OidIsValid(shared->slots[i].user))
			return &shared->slots[i];
	return NULL;
}

/*
 * Reserve connection pid as this login's eviction victim, if its exit
 * frees every reached blocking limit in checks[] (it was charged for each
 * of their roles) and no other login has chosen it.  A connection charged
 * for more roles than its slot records counts only for those recorded.
 */
bool
connmgr_reserve_victim(int pid, const ConnmgrCheck *checks, int nchecks)
{
	ConnmgrSlot *slot;
	bool		frees = false;

	if (shared == NULL)
		return false;
	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	slot = slot_of(pid);
	if (slot != NULL && slot->evicted_by == 0)
	{
		frees = true;
		for (int i = 0; i < nchecks && frees; i++)
			if (checks[i].reached && checks[i].blocking)
				frees = slot_charged_for(slot, checks[i].roleid);
		if (frees)
		{
			slot->evicted_by = MyProcPid;
			reserved_victims = true;
		}
	}
	LWLockRelease(shared->lock);
	return frees;
}

/* Does user hold a counted connection that was charged for role? */
bool
connmgr_holds_connection_in(Oid user, Oid role)
{
	bool		result = false;

	if (shared == NULL)
		return false;
	LWLockAcquire(shared->lock, LW_SHARED);
	for (int i = 0; i < MaxBackends && !result; i++)
		result = shared->slots[i].user == user &&
			slot_charged_for(&shared->slots[i], role);
	LWLockRelease(shared->lock);
	return result;
}

/* Give back a victim this login reserved but decided to spare. */
void
connmgr_spare_victim(int pid)
{
	ConnmgrSlot *slot;

	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	slot = slot_of(pid);
	if (slot != NULL && slot->evicted_by == MyProcPid)
		slot->evicted_by = 0;
	LWLockRelease(shared->lock);
}

/*
 * Give back every victim this login reserved, when the login check failed
 * (a victim already signalled exits anyway).
 */
void
connmgr_spare_victims(void)
{
	if (shared == NULL)
		return;
	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	spare_my_victims();
	LWLockRelease(shared->lock);
}

/*
 * Note why the connection target is being terminated, before it is
 * signalled.  False if no registered backend has that pid and start time.
 */
bool
connmgr_note_ending(const ConnmgrTarget *target, const ConnmgrEnding *ending)
{
	bool		found = false;

	if (shared == NULL)
		return false;
	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	for (int i = 0; i < MaxBackends && !found; i++)
	{
		ConnmgrSlot *slot = &shared->slots[i];

		if (slot->pid == target->pid && slot->started == target->started)
		{
			slot->ending = *ending;
			found = true;
		}
	}
	LWLockRelease(shared->lock);
	return found;
}

/* Why this backend is being terminated; false if nobody said. */
bool
connmgr_my_ending(ConnmgrEnding *ending)
{
	ConnmgrSlot *slot;

	if (shared == NULL || !registered)
		return false;
	LWLockAcquire(shared->lock, LW_SHARED);
	slot = &shared->slots[CONNMGR_MY_PROC_INDEX];
	*ending = slot->ending;
	LWLockRelease(shared->lock);
	return ending->kind != ENDING_NONE;
}

/*
 * Every counted connection with what it was charged for, for
 * enforce_limits(): fills buf (room for MaxBackends) and returns how many.
 */
int
connmgr_counted_connections(ConnmgrCounted *buf)
{
	int			n = 0;

	if (shared == NULL)
		return 0;
	LWLockAcquire(shared->lock, LW_SHARED);
	for (int i = 0; i < MaxBackends; i++)
	{
		const ConnmgrSlot *slot = &shared->slots[i];

		if (slot->pid == 0 || !OidIsValid(slot->user))
			continue;
		buf[n].pid = slot->pid;
		buf[n].started = slot->started;
		buf[n].user = slot->user;
		buf[n].nroles = Min(slot->nroles, CONNMGR_SLOT_ROLES);
		memcpy(buf[n].roles, slot->roles, sizeof(Oid) * buf[n].nroles);
		n++;
	}
	LWLockRelease(shared->lock);
	return n;
}

/*
 * The server address of each registered backend, for the connections view:
 * fills buf (room for MaxBackends entries) and returns how many.
 */
int
connmgr_server_addresses(ConnmgrServerAddr *buf)
{
	int			n = 0;

	if (shared == NULL)
		return 0;
	LWLockAcquire(shared->lock, LW_SHARED);
	for (int i = 0; i < MaxBackends; i++)
	{
		if (shared->slots[i].pid == 0)
			continue;
		buf[n].pid = shared->slots[i].pid;
		buf[n].started = shared->slots[i].started;
		buf[n].addr = shared->slots[i].server_addr;
		n++;
	}
	LWLockRelease(shared->lock);
	return n;
}

/*
 * Copy the counters into buf (room for connmgr_max_tracked_roles entries);
 * returns how many were copied.
 */
int
connmgr_counter_snapshot(ConnmgrCounter *buf)
{
	int			n;

	if (shared == NULL)
		return 0;
	LWLockAcquire(shared->lock, LW_SHARED);
	n = connmgr_counter_copy(buf, connmgr_max_tracked_roles);
	LWLockRelease(shared->lock);
	return n;
}
