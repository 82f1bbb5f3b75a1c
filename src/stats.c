/*
 * stats.c
 *		Connection statistics in shared memory: per-role counters, server
 *		totals, churn buckets, and the event log.
 *
 * Counters: one hash entry per role name that has tried to connect since
 * the server started or the statistics were reset: opened (admitted
 * logins), closed, rejected (refused with 53300, by connmgr or by
 * PostgreSQL's own limits), evicted, terminated (through connmgr's kill
 * functions), expired (ended by an idle timeout: kept apart from the kills,
 * but the views of version 1.0 have no column for it yet), auth_failed,
 * last_connect and last_reject.  Server totals of the same,
 * and opens and closes per 10-second bucket over the last hour (churn and
 * leak signals).  When the hash holds connmgr.max_role_stats entries, a
 * new role's counters are not kept; the server totals still count it.
 * Failed logins under names that are no role share one entry (the empty
 * name), so made-up names cannot fill the table; the event log shows the
 * names tried last.  Names come from the client's startup packet and are kept as
 * UTF-8 (names.c).  A login refused before it has a
 * PGPROC ("too many clients already") cannot wait for the lock: it is
 * counted in the server total with an atomic, and logged as an event.
 *
 * Locking rules: the counters and buckets are protected by connmgr's LWLock
 * (shmem.c).  The login path updates them inside the exclusive section it
 * already holds for its claim, the exit path inside its release; refusals
 * and failed authentications take the lock for their own update.  The
 * functions named *_locked expect the lock held exclusively and never
 * raise an error.
 *
 * Event log: connmgr.event_log_size entries in two rings, oldest
 * overwritten in each.  Failed logins (auth_failed) and refusals before
 * authentication come from clients that have not shown who they are, and
 * any number of them can be made up: they are kept apart, in a tenth of
 * the entries (rounded down), so that they push out only each other; every
 * other event goes to the rest.  A reader merges the two by time.  A writer
 * takes the next position of its ring with an atomic fetch-and-add and
 * fills that entry, bracketing it with a sequence number (odd while
 * writing); it never waits for anyone.  A reader keeps a copy only if the
 * sequence number was the same, even, before and after copying.
 */
#include "postgres.h"

#include "libpq/libpq-be.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "utils/hsearch.h"
#include "utils/timestamp.h"

#include "connmgr.h"

#define CHURN_BUCKET_SECONDS 10
#define CHURN_BUCKETS 360		/* one hour */

typedef struct RoleStatsEntry
{
	NameData	name;			/* hash key */
	ConnmgrRoleStats stats;
} RoleStatsEntry;

typedef struct ChurnBucket
{
	int64		epoch;			/* seconds / CHURN_BUCKET_SECONDS */
	int32		opened;
	int32		closed;
} ChurnBucket;

typedef struct EventSlot
{
	pg_atomic_uint64 seq;		/* 2 * position + 1 while written, + 2 after */
	ConnmgrEvent event;
} EventSlot;

/* Failed logins are kept apart from all other events. */
typedef enum EventRingKind
{
	RING_MAIN,
	RING_FAILED_LOGINS
} EventRingKind;

#define EVENT_RINGS 2

typedef struct EventRing
{
	pg_atomic_uint64 next;		/* position of the next event */
	int			first;			/* its first entry in StatsShared.events */
	int			size;			/* and how many it has */
} EventRing;

typedef struct StatsShared
{
	ConnmgrRoleStats totals;
	pg_atomic_uint64 rejected_early; /* refused before having a PGPROC */
	TimestampTz reset_time;
	ChurnBucket buckets[CHURN_BUCKETS];
	EventRing rings[EVENT_RINGS];
	EventSlot events[FLEXIBLE_ARRAY_MEMBER];	/* connmgr_event_log_size */
} StatsShared;

static StatsShared *stats = NULL;
static HTAB *role_stats = NULL;

/* This backend's connection, as its events describe it. */
static ConnmgrEvent my_connection;
static bool my_connection_known = false;
static NameData my_stats_key;	/* the role name, or "" for no such role */

static Size
stats_struct_size(void)
{
	return add_size(offsetof(StatsShared, events),
					mul_size(connmgr_event_log_size, sizeof(EventSlot)));
}

Size
connmgr_stats_shmem_size(void)
{
	return add_size(MAXALIGN(stats_struct_size()),
					hash_estimate_size(connmgr_max_role_stats, sizeof(RoleStatsEntry)));
}

/* Called from shmem.c's startup hook, AddinShmemInitLock held. */
void
connmgr_stats_shmem_init(void)
{
	HASHCTL		info;
	bool		found;

	stats = ShmemInitStruct("connmgr statistics", stats_struct_size(), &found);
	if (!found)
	{
		memset(stats, 0, stats_struct_size());
		stats->reset_time = GetCurrentTimestamp();
		pg_atomic_init_u64(&stats->rejected_early, 0);
		stats->rings[RING_FAILED_LOGINS].size = connmgr_event_log_size / 10;
		stats->rings[RING_MAIN].size =
			connmgr_event_log_size - stats->rings[RING_FAILED_LOGINS].size;
		stats->rings[RING_FAILED_LOGINS].first = stats->rings[RING_MAIN].size;
		for (int r = 0; r < EVENT_RINGS; r++)
			pg_atomic_init_u64(&stats->rings[r].next, 0);
		for (int i = 0; i < connmgr_event_log_size; i++)
			pg_atomic_init_u64(&stats->events[i].seq, 0);
	}
	memset(&info, 0, sizeof(info));
	info.keysize = sizeof(NameData);
	info.entrysize = sizeof(RoleStatsEntry);
	role_stats = ShmemInitHash("connmgr role statistics",
							   connmgr_max_role_stats, connmgr_max_role_stats,
							   &info, HASH_ELEM | HASH_BLOBS);
}

/*
 * Remember who this connection is, for its counters and events: the names
 * its client gave, and whether the user name is a role.
 */
void
connmgr_stats_remember_login(const Port *port, bool role_exists)
{
	memset(&my_connection, 0, sizeof(my_connection));
	my_connection.pid = MyProcPid;
	my_connection.started = MyStartTimestamp;
	connmgr_to_shared_text(NameStr(my_connection.username), port->user_name,
						   NAMEDATALEN, false);
	connmgr_to_shared_text(NameStr(my_connection.database), port->database_name,
						   NAMEDATALEN, false);
	connmgr_to_shared_text(my_connection.application_name, port->application_name,
						   NAMEDATALEN, false);
	connmgr_to_shared_text(my_connection.client, connmgr_sockaddr_host(&port->raddr, NULL),
						   sizeof(my_connection.client), false);
	memset(&my_stats_key, 0, sizeof(my_stats_key));
	if (role_exists)
		my_stats_key = my_connection.username;
	my_connection_known = true;
}

/* Has connmgr_stats_remember_login() been called in this backend? */
bool
connmgr_stats_login_known(void)
{
	return my_connection_known;
}

static void
bump(ConnmgrRoleStats *s, ConnmgrStat what, TimestampTz now)
{
	switch (what)
	{
		case STAT_OPENED:
			s->opened++;
			s->last_connect = now;
			break;
		case STAT_CLOSED:
			s->closed++;
			break;
		case STAT_REJECTED:
			s->rejected++;
			s->last_reject = now;
			break;
		case STAT_EVICTED:
			s->evicted++;
			break;
		case STAT_TERMINATED:
			s->terminated++;
			break;
		case STAT_EXPIRED:
			s->expired++;
			break;
		case STAT_AUTH_FAILED:
			s->auth_failed++;
			break;
	}
}

/* The churn bucket of now, emptied if it last served an older period. */
static ChurnBucket *
current_bucket(TimestampTz now)
{
	int64		epoch = (int64) timestamptz_to_time_t(now) / CHURN_BUCKET_SECONDS;
	ChurnBucket *bucket = &stats->buckets[epoch % CHURN_BUCKETS];

	if (bucket->epoch != epoch)
	{
		bucket->epoch = epoch;
		bucket->opened = bucket->closed = 0;
	}
	return bucket;
}

/*
 * Lock held exclusively: count what happened to a connection of this
 * backend's user (opened, closed, evicted, terminated, expired).
 */
void
connmgr_stats_count_locked(ConnmgrStat what)
{
	TimestampTz now = GetCurrentTimestamp();
	bool		found;
	RoleStatsEntry *entry;

	if (stats == NULL || !my_connection_known)
		return;
	bump(&stats->totals, what, now);
	if (what == STAT_OPENED)
		current_bucket(now)->opened++;
	if (what == STAT_CLOSED)
		current_bucket(now)->closed++;
	entry = hash_search(role_stats, &my_stats_key, HASH_FIND, NULL);
	if (entry == NULL && hash_get_num_entries(role_stats) < connmgr_max_role_stats)
	{
		entry = hash_search(role_stats, &my_stats_key, HASH_ENTER_NULL, &found);
		if (entry != NULL && !found)
			memset(&entry->stats, 0, sizeof(entry->stats));
	}
	if (entry != NULL)
		bump(&entry->stats, what, now);
}

/*
 * The same, taking the lock: for refusals and failed authentications.  A
 * backend without a PGPROC cannot wait for a lock: its refusal goes into
 * the server total only, with an atomic.
 */
void
connmgr_stats_count(ConnmgrStat what)
{
	if (stats == NULL || !my_connection_known)
		return;
	if (MyProc == NULL)
	{
		if (what == STAT_REJECTED)
			pg_atomic_fetch_add_u64(&stats->rejected_early, 1);
		return;
	}
	LWLockAcquire(connmgr_lock(), LW_EXCLUSIVE);
	connmgr_stats_count_locked(what);
	LWLockRelease(connmgr_lock());
}

/*
 * The ring for an event of this backend: a failed login, or a refusal
 * before authentication (its user name not known as a role), goes apart.
 */
static EventRing *
ring_for(ConnmgrEventKind kind)
{
	bool		failed_login = kind == EVENT_AUTH_FAILED ||
		NameStr(my_stats_key)[0] == '\0';

	return &stats->rings[failed_login ? RING_FAILED_LOGINS : RING_MAIN];
}

/*
 * Log an event about this backend's connection; ending (actor and reason)
 * may be NULL.  Never waits and never raises an error.
 */
void
connmgr_stats_event(ConnmgrEventKind kind, const ConnmgrEnding *ending)
{
	EventRing  *ring;
	uint64		position;
	EventSlot  *slot;

	if (stats == NULL || !my_connection_known)
		return;
	ring = ring_for(kind);
	if (ring->size == 0)
		return;
	position = pg_atomic_fetch_add_u64(&ring->next, 1);
	slot = &stats->events[ring->first + position % ring->size];
	pg_atomic_write_u64(&slot->seq, 2 * position + 1);
	pg_write_barrier();
	slot->event = my_connection;
	slot->event.kind = kind;
	slot->event.time = GetCurrentTimestamp();
	if (ending != NULL)
	{
		strlcpy(NameStr(slot->event.actor), ending->actor, NAMEDATALEN);
		connmgr_to_shared_text(slot->event.reason, ending->reason,
							   sizeof(slot->event.reason), false);
	}
	pg_write_barrier();
	pg_atomic_write_u64(&slot->seq, 2 * position + 2);
}

/*
 * Copy the events of a ring, oldest first, into buf (room for its size);
 * returns how many.  Entries being written at the moment are left out.
 */
static int
copy_ring(EventRing *ring, ConnmgrEvent *buf)
{
	uint64		next = pg_atomic_read_u64(&ring->next);
	uint64		first = next > (uint64) ring->size ? next - ring->size : 0;
	int			n = 0;

	for (uint64 position = first; position < next; position++)
	{
		EventSlot  *slot = &stats->events[ring->first + position % ring->size];
		uint64		before = pg_atomic_read_u64(&slot->seq);

		pg_read_barrier();
		buf[n] = slot->event;
		pg_read_barrier();
		if (before == 2 * position + 2 && pg_atomic_read_u64(&slot->seq) == before)
			n++;
	}
	return n;
}

/*
 * Copy the logged events of both rings, oldest first, into buf (room for
 * connmgr_event_log_size); returns how many.
 */
int
connmgr_stats_events(ConnmgrEvent *buf)
{
	EventRing  *apart;
	ConnmgrEvent *apart_events;
	int			n;
	int			napart;

	if (stats == NULL || connmgr_event_log_size == 0)
		return 0;
	n = copy_ring(&stats->rings[RING_MAIN], buf);
	apart = &stats->rings[RING_FAILED_LOGINS];
	apart_events = palloc(sizeof(ConnmgrEvent) * Max(apart->size, 1));
	napart = copy_ring(apart, apart_events);

	/* Merge, from the newest down. */
	for (int i = n - 1, j = napart - 1, k = n + napart - 1; j >= 0; k--)
	{
		if (i >= 0 && buf[i].time > apart_events[j].time)
			buf[k] = buf[i--];
		else
			buf[k] = apart_events[j--];
	}
	pfree(apart_events);
	return n + napart;
}

/*
 * Copy the per-role counters into buf (room for connmgr_max_role_stats)
 * and the server totals into *totals; returns how many roles.
 */
int
connmgr_stats_roles(ConnmgrRoleStats *totals, NameData *names, ConnmgrRoleStats *buf)
{
	HASH_SEQ_STATUS seq;
	RoleStatsEntry *entry;
	int			n = 0;

	if (stats == NULL)
		return 0;
	LWLockAcquire(connmgr_lock(), LW_SHARED);
	*totals = stats->totals;
	totals->rejected += pg_atomic_read_u64(&stats->rejected_early);
	hash_seq_init(&seq, role_stats);
	while ((entry = hash_seq_search(&seq)) != NULL)
	{
		if (n >= connmgr_max_role_stats)
		{
			hash_seq_term(&seq);
			break;
		}
		names[n] = entry->name;
		buf[n++] = entry->stats;
	}
	LWLockRelease(connmgr_lock());
	return n;
}

/*
 * Opens in the last seconds (a multiple of CHURN_BUCKET_SECONDS, at most an
 * hour), and opens minus closes in that time.
 */
void
connmgr_stats_churn(int seconds, int64 *opened, int64 *net)
{
	int64		now_epoch = (int64) timestamptz_to_time_t(GetCurrentTimestamp()) / CHURN_BUCKET_SECONDS;
	int			nbuckets = Min(seconds / CHURN_BUCKET_SECONDS, CHURN_BUCKETS);

	*opened = *net = 0;
	if (stats == NULL)
		return;
	LWLockAcquire(connmgr_lock(), LW_SHARED);
	for (int i = 0; i < CHURN_BUCKETS; i++)
	{
		const ChurnBucket *bucket = &stats->buckets[i];

		if (bucket->epoch > now_epoch - nbuckets && bucket->epoch <= now_epoch)
		{
			*opened += bucket->opened;
			*net += bucket->opened - bucket->closed;
		}
	}
	LWLockRelease(connmgr_lock());
}

/* When the statistics were last reset (or the server started). */
TimestampTz
connmgr_stats_reset_time(void)
{
	return stats ? stats->reset_time : 0;
}

/* Forget every counter and event. */
void
connmgr_stats_reset(void)
{
	HASH_SEQ_STATUS seq;
	RoleStatsEntry *entry;

	if (stats == NULL)
		return;
	LWLockAcquire(connmgr_lock(), LW_EXCLUSIVE);
	hash_seq_init(&seq, role_stats);
	while ((entry = hash_seq_search(&seq)) != NULL)
		hash_search(role_stats, &entry->name, HASH_REMOVE, NULL);
	memset(&stats->totals, 0, sizeof(stats->totals));
	pg_atomic_write_u64(&stats->rejected_early, 0);
	memset(stats->buckets, 0, sizeof(stats->buckets));
	stats->reset_time = GetCurrentTimestamp();
	for (int i = 0; i < connmgr_event_log_size; i++)
		pg_atomic_write_u64(&stats->events[i].seq, 0);
	for (int r = 0; r < EVENT_RINGS; r++)
		pg_atomic_write_u64(&stats->rings[r].next, 0);
	LWLockRelease(connmgr_lock());
}
