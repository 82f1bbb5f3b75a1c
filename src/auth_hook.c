/*
 * auth_hook.c
 *		The ClientAuthentication_hook: where connection limits are enforced.
 *
 * Chains to the previous hook, then registers every authenticated client
 * connection in shared memory (so that it has an identity and can be told
 * why connmgr ends it), and leaves alone what connmgr does not limit: failed authentications, unknown roles (PostgreSQL rejects them
 * next), superusers, and physical replication connections.  Everything
 * else goes to limits.c, which counts the connection and applies the
 * policies: client backends, and logical replication connections
 * (replication=database), which can run ordinary SQL too.
 */
#include "postgres.h"

#include "libpq/auth.h"
#include "libpq/libpq-be.h"
#include "replication/walsender.h"
#include "utils/acl.h"

#include "connmgr.h"

static ClientAuthentication_hook_type prev_client_auth_hook = NULL;

static void
connmgr_client_auth(Port *port, int status)
{
	Oid			user;

	if (prev_client_auth_hook)
		prev_client_auth_hook(port, status);

	if (status != STATUS_OK)
		return;
	connmgr_register_backend(&port->laddr);
	if (am_walsender && !am_db_walsender)
		return;
	user = get_role_oid(port->user_name, true);
	if (!OidIsValid(user) || superuser_arg(user))
		return;

	connmgr_enforce_limits(user, port->database_name);
}

void
connmgr_install_auth_hook(void)
{
	prev_client_auth_hook = ClientAuthentication_hook;
	ClientAuthentication_hook = connmgr_client_auth;
}
