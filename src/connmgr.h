/*
 * connmgr.h
 *		Declarations shared by the files of connmgr.
 *
 * Each .c file owns one concern; this header lists what each one offers the
 * others.  See README.md, "Where things live".
 */
#ifndef CONNMGR_H
#define CONNMGR_H

#include "postgres.h"

#include "catalog/pg_authid.h"
#include "fmgr.h"
#include "libpq/pqcomm.h"
#include "miscadmin.h"
#include "nodes/pg_list.h"
#include "storage/lwlock.h"
#include "utils/backend_status.h"
#include "utils/tuplestore.h"

/* connmgr.c: module entry point, GUCs */
extern int	connmgr_terminate_timeout_ms;
extern bool connmgr_enabled;
extern int	connmgr_evict_min_idle_ms;
extern int	connmgr_max_tracked_roles;
extern int	connmgr_max_role_stats;
extern int	connmgr_event_log_size;
extern int	connmgr_warning_pct;
extern int	connmgr_critical_pct;
extern int	connmgr_login_cache_size;
extern int	connmgr_limit_grace_ms;
extern int	connmgr_wait_timeout_ms;
extern int	connmgr_max_waiting;
extern int	connmgr_max_waiting_per_user;
extern int	connmgr_wait_reserve;
extern int	connmgr_idle_check_interval_ms;
extern void connmgr_require_preload(void);

/* srf.c: materialized results for set-returning functions */
extern Tuplestorestate *connmgr_begin_result_set(FunctionCallInfo fcinfo,
												 TupleDesc *tupdesc);

/* backends.c: the current backends, as pg_stat_activity sees them */
typedef struct ConnmgrTarget
{
	int			pid;
	Oid			userid;
	TimestampTz started;		/* tells a reused pid from the chosen backend */
} ConnmgrTarget;

extern int	connmgr_backend_count(void);
extern PgBackendStatus *connmgr_backend_at(int index);
extern PgBackendStatus *connmgr_find_backend(int pid);
extern ConnmgrTarget connmgr_target_of(const PgBackendStatus *be);
extern bool connmgr_same_backend(const PgBackendStatus *be, const ConnmgrTarget *target);
extern char *connmgr_connection_id(const PgBackendStatus *be);
extern bool connmgr_parse_connection_id(const char *id, int *pid, long *start_seconds);
extern bool connmgr_started_in_second(const PgBackendStatus *be, long start_seconds);
extern bool connmgr_is_client_connection(const PgBackendStatus *be);
extern Datum connmgr_client_addr_datum(const PgBackendStatus *be, bool *isnull);
extern const char *connmgr_client_addr_text(const PgBackendStatus *be);
extern const char *connmgr_sockaddr_host(const SockAddr *addr, int *port);
extern void connmgr_refresh_backends(void);
extern int	connmgr_waiting_count(void);
extern PgBackendStatus *connmgr_waiting_at(int index);
extern bool connmgr_is_waiting(const PgBackendStatus *be);
extern bool connmgr_backend_leaving(int pid, TimestampTz started);

/* names.c: how the SQL API reads role names; texts kept in shared memory */
extern Oid	connmgr_classdb_role_arg(FunctionCallInfo fcinfo, int argno);
extern Oid	connmgr_role_arg(FunctionCallInfo fcinfo, int argno, const char **name);
extern void connmgr_to_shared_text(char *dst, const char *src, size_t size,
								   bool from_database);
extern char *connmgr_from_shared_text(const char *utf8);
extern void connmgr_prepare_text_conversion(void);

/* permissions.c: who may see, terminate and limit whom; role memberships */
extern bool connmgr_may_terminate(Oid caller, Oid target);
extern bool connmgr_may_see(Oid caller, Oid target);
extern bool connmgr_may_manage_policy(Oid caller, Oid target);
extern bool connmgr_may_see_policy(Oid caller, Oid target);
extern void connmgr_check_may_manage_policy(Oid target, const char *name);
extern bool connmgr_group_policies_apply(Oid user);

#define ROLES_ALL		0		/* every membership grant */
#define ROLES_INHERITED	0x01	/* only grants that pass on privileges */
#define ROLES_ENROLLED	0x02	/* not grants WITH ADMIN OPTION */
extern List *connmgr_roles_containing(Oid roleid, int flags);

/* policy.c: connection-limit policies, stored as security labels on roles */
typedef enum ConnmgrOnLimit
{
	ON_LIMIT_REJECT,
	ON_LIMIT_EVICT_IDLE,
	ON_LIMIT_LOG,
	ON_LIMIT_WAIT
} ConnmgrOnLimit;

typedef struct ConnmgrPolicy
{
	int			per_member;		/* -1: none */
	int			total;			/* -1: none */
	ConnmgrOnLimit on_limit;
	int			wait_timeout_ms;	/* on_limit wait: -1 for the GUC's */
	int			max_waiting;	/* on_limit wait: -1 for the GUC's */
	int			idle_timeout_ms;	/* -1: none */
	int			idle_in_xact_timeout_ms;	/* -1: none */
} ConnmgrPolicy;

extern const char *connmgr_on_limit_name(ConnmgrOnLimit on_limit);
extern bool connmgr_on_limit_from_name(const char *name, ConnmgrOnLimit *on_limit);
extern char *connmgr_policy_text(const ConnmgrPolicy *policy);
typedef enum ConnmgrPolicyStatus
{
	POLICY_NONE,
	POLICY_VALID,
	POLICY_INVALID				/* a damaged label */
} ConnmgrPolicyStatus;

extern bool connmgr_has_policy(Oid roleid);
extern ConnmgrPolicyStatus connmgr_lookup_policy(Oid roleid, ConnmgrPolicy *policy,
												 const char **problem);
typedef struct ConnmgrRolePolicy
{
	Oid			roleid;
	ConnmgrPolicy policy;		/* valid when problem is NULL */
	const char *problem;		/* why the label is damaged, or NULL */
} ConnmgrRolePolicy;

extern List *connmgr_all_policies(void);
extern void connmgr_write_policy(Oid roleid, const ConnmgrPolicy *policy);
extern void connmgr_register_label_provider(void);

/* shmem.c: per-role counters and per-backend slots in shared memory */
typedef enum ConnmgrEndingKind
{
	ENDING_NONE,
	ENDING_KILL,				/* a kill function */
	ENDING_EVICTION,			/* evicted to admit a login of its role */
	ENDING_IDLE_TIMEOUT,		/* idle for longer than its idle_timeout */
	ENDING_IDLE_IN_XACT_TIMEOUT /* idle in a transaction for longer than its
								 * idle_in_transaction_timeout */
} ConnmgrEndingKind;

/* Did an idle timeout expire (rather than someone end the connection)? */
static inline bool
connmgr_ending_is_expiry(ConnmgrEndingKind kind)
{
	return kind == ENDING_IDLE_TIMEOUT || kind == ENDING_IDLE_IN_XACT_TIMEOUT;
}

#define CONNMGR_REASON_LEN 256

/* Who is terminating a connection through connmgr, and why. */
typedef struct ConnmgrEnding
{
	ConnmgrEndingKind kind;
	char		actor[NAMEDATALEN];
	char		reason[CONNMGR_REASON_LEN];	/* "" for none; UTF-8 */
} ConnmgrEnding;

/* How many of a connection's charged roles its slot records. */
#define CONNMGR_SLOT_ROLES 64

/* A counted connection and (the first of) the roles it was charged for. */
typedef struct ConnmgrCounted
{
	int			pid;
	TimestampTz started;
	Oid			user;
	int			nroles;
	Oid			roles[CONNMGR_SLOT_ROLES];
} ConnmgrCounted;

typedef struct ConnmgrServerAddr
{
	int			pid;
	TimestampTz started;
	SockAddr	addr;
} ConnmgrServerAddr;

typedef struct ConnmgrCounter
{
	Oid			roleid;			/* hash key */
	int			own;			/* connections logged in as roleid */
	int			total;			/* connections of roleid and its members */
} ConnmgrCounter;

/* One limit a login must pass. */
typedef struct ConnmgrCheck
{
	Oid			roleid;			/* whose counter */
	int			role_index;		/* of roleid in the login's roles */
	bool		own;			/* check 'own' (per member) or 'total' */
	int			limit;
	Oid			source;			/* the role whose policy set it */
	ConnmgrOnLimit action;		/* what that policy does at the limit */
	int			wait_timeout_ms;	/* for wait: how long, -1 the default */
	int			max_waiting;	/* for wait: how many may, -1 the default */
	bool		blocking;		/* does reaching it refuse the login? */
	int			current;		/* out: the count seen */
	bool		reached;		/* out: current >= limit */
} ConnmgrCheck;

/* A login waiting for a connection slot, as the views show it. */
typedef struct ConnmgrWaitingLogin
{
	int			pid;
	TimestampTz started;
	Oid			user;
	Oid			database;
	Oid			role;			/* whose limit it waits for */
	TimestampTz since;
	SockAddr	client_addr;
	char		application_name[NAMEDATALEN];
} ConnmgrWaitingLogin;

typedef enum ConnmgrWaitStart
{
	WAIT_STARTED,
	WAIT_QUEUE_FULL,			/* max_waiting logins wait for the role */
	WAIT_USER_FULL				/* max_waiting_per_user of the user's wait */
} ConnmgrWaitStart;

typedef enum ConnmgrClaimResult
{
	CLAIM_ADMITTED,				/* counted; no blocking limit reached */
	CLAIM_BLOCKED,				/* not counted; a blocking limit is reached */
	CLAIM_NOT_COUNTED			/* admitted without counting (no room) */
} ConnmgrClaimResult;

extern void connmgr_install_shmem_hooks(void);
extern LWLock *connmgr_lock(void);
extern void connmgr_login_admitted(void);
extern void connmgr_register_backend(const SockAddr *server_addr);
extern bool connmgr_note_ending(const ConnmgrTarget *target, const ConnmgrEnding *ending);
extern bool connmgr_my_ending(ConnmgrEnding *ending);
extern int	connmgr_server_addresses(ConnmgrServerAddr *buf);
extern int	connmgr_counted_connections(ConnmgrCounted *buf);
extern ConnmgrClaimResult connmgr_claim(Oid user, const Oid *roles, int nroles,
										ConnmgrCheck *checks, int nchecks);
extern bool connmgr_holds_connection_in(Oid user, Oid role);
extern void connmgr_wait_for_release(long timeout_ms);
extern ConnmgrWaitStart connmgr_start_waiting(const ConnmgrWaitingLogin *who, bool queued,
											  int max_waiting, int max_per_user,
											  int *waiting);
extern void connmgr_wait_in(Oid role);
extern bool connmgr_last_in_line(void);
extern void connmgr_stop_waiting(void);
extern int	connmgr_waiting_logins(ConnmgrWaitingLogin *buf);
extern bool connmgr_reserve_victim(int pid, const ConnmgrCheck *checks, int nchecks);
extern void connmgr_spare_victim(int pid);
extern void connmgr_spare_victims(void);
extern int	connmgr_counter_snapshot(ConnmgrCounter *buf);

/* counters.c: the table of per-role counters (connmgr's lock held) */
extern Size connmgr_counters_shmem_size(void);
extern void connmgr_counters_shmem_init(void);
extern ConnmgrCounter *connmgr_counter_find(Oid role);
extern bool connmgr_counters_enter(const Oid *roles, int nroles,
								   ConnmgrCounter **entries);
extern void connmgr_counters_charge(Oid user, const Oid *roles,
									ConnmgrCounter **entries, int nroles);
extern void connmgr_counters_forget_unused(const Oid *roles, int nroles);
extern void connmgr_counters_release(Oid user, const Oid *roles, int nroles);
extern int	connmgr_counter_copy(ConnmgrCounter *buf, int max);

/* stats.c: per-role counters, churn, and the event log */
typedef enum ConnmgrStat
{
	STAT_OPENED,
	STAT_CLOSED,
	STAT_REJECTED,
	STAT_EVICTED,
	STAT_TERMINATED,
	STAT_EXPIRED,
	STAT_AUTH_FAILED
} ConnmgrStat;

typedef struct ConnmgrRoleStats
{
	int64		opened;
	int64		closed;
	int64		rejected;
	int64		evicted;
	int64		terminated;
	int64		expired;		/* ended by an idle timeout; not in 1.0's views */
	int64		auth_failed;
	TimestampTz last_connect;
	TimestampTz last_reject;
} ConnmgrRoleStats;

typedef enum ConnmgrEventKind
{
	EVENT_CONNECT,
	EVENT_DISCONNECT,
	EVENT_REJECT,
	EVENT_EVICT,
	EVENT_TERMINATE,
	EVENT_AUTH_FAILED
} ConnmgrEventKind;

typedef struct ConnmgrEvent
{
	TimestampTz time;
	ConnmgrEventKind kind;
	int			pid;
	TimestampTz started;		/* the session's start: its id, its duration */
	NameData	username;
	NameData	database;
	char		application_name[NAMEDATALEN];
	char		client[48];		/* numeric IP address, "" for a Unix socket */
	NameData	actor;			/* evictions and terminations */
	char		reason[128];
} ConnmgrEvent;

struct Port;
extern Size connmgr_stats_shmem_size(void);
extern void connmgr_stats_shmem_init(void);
extern void connmgr_stats_remember_login(const struct Port *port, bool role_exists);
extern bool connmgr_stats_login_known(void);
extern void connmgr_stats_count_locked(ConnmgrStat what);
extern void connmgr_stats_count(ConnmgrStat what);
extern void connmgr_stats_event(ConnmgrEventKind kind, const ConnmgrEnding *ending);
extern int	connmgr_stats_events(ConnmgrEvent *buf);
extern int	connmgr_stats_roles(ConnmgrRoleStats *totals, NameData *names,
								ConnmgrRoleStats *buf);
extern void connmgr_stats_churn(int seconds, int64 *opened, int64 *net);
extern TimestampTz connmgr_stats_reset_time(void);
extern void connmgr_stats_reset(void);

/* terminate.c: the one path that ends connections, and what victims see */
typedef enum ConnmgrKillOutcome
{
	KILL_NOT_FOUND,				/* no such connection, or not visible */
	KILL_OWN,					/* the caller's own connection */
	KILL_NOT_CLIENT,			/* background worker, autovacuum, ... */
	KILL_DENIED,				/* visible, but not the caller's to end */
	KILL_WOULD_TERMINATE,		/* dry run: may be ended, not signalled */
	KILL_TERMINATED,			/* signalled, and gone */
	KILL_ALREADY_GONE,			/* exited before it was signalled */
	KILL_TIMED_OUT				/* signalled, still there after the wait */
} ConnmgrKillOutcome;

/* One connection to end: the request and, after connmgr_kill(), the outcome. */
typedef struct ConnmgrKill
{
	int			pid;			/* in */
	bool		by_id;			/* in: start_seconds must match too */
	long		start_seconds;	/* in */
	TimestampTz started;		/* in: if not 0, must match exactly */
	ConnmgrTarget target;		/* out: the backend found */
	BackendType backend_type;	/* out */
	char	   *connection_id;	/* out: its id, or NULL */
	ConnmgrKillOutcome outcome; /* out */
} ConnmgrKill;

extern void connmgr_kill(ConnmgrKill *kills, int n, const char *reason, bool dry_run);
extern char *connmgr_kill_message(const ConnmgrKill *kill);
extern bool connmgr_end_connection(const PgBackendStatus *be, ConnmgrEndingKind kind,
								   const char *reason);
extern bool connmgr_has_exited(int pid);
extern void connmgr_tell_victim(ErrorData *edata);

/* cache.c: what logins need, cached in shared memory, never stale */
extern Size connmgr_cache_shmem_size(void);
extern void connmgr_cache_shmem_init(void);
extern uint64 connmgr_cache_generation(void);
extern bool connmgr_cache_lookup(Oid user, uint64 generation, bool enabled,
								 Oid **roles, int *nroles,
								 ConnmgrCheck **checks, int *nchecks);
extern void connmgr_cache_store(Oid user, uint64 generation, bool enabled,
								const Oid *roles, int nroles,
								const ConnmgrCheck *checks, int nchecks);
extern void connmgr_cache_note_commit_prepared(void);
extern void connmgr_cache_note_policy_change(Oid roleid);
extern void connmgr_cache_register_callbacks(void);

/* limits.c: deciding whether a login may proceed under its policies */
extern void connmgr_enforce_limits(Oid user, const char *database);
extern int	connmgr_enforced_per_member(Oid user);
extern void connmgr_idle_timeouts(Oid user, int *idle_ms, Oid *idle_source,
								  int *in_xact_ms, Oid *in_xact_source);

/* idle.c: the worker that ends connections past their idle timeouts */
extern void connmgr_register_idle_worker(void);

/* hooks.c: the hooks connmgr installs into PostgreSQL */
extern void connmgr_install_hooks(void);

#endif							/* CONNMGR_H */
