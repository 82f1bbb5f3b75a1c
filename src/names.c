/*
 * names.c
 *		How every function of the SQL API reads a role name.  A string (a
 *		text or varchar argument, such as a quoted literal) is read as SQL
 *		reads an identifier, and as ClassDB does: in double quotes it keeps
 *		its case, with "" standing for one "; otherwise it is folded to
 *		lower case.  So 'Student' and 'student' name role student, and
 *		'"Student"' names role Student.  A value of type name (current_user,
 *		pg_roles.rolname, connection_limits.role_name) is a role name
 *		already and is taken exactly; every name-taking function has a name
 *		overload for that.
 *
 * The ClassDB-compatible functions answer a name that names no role (NULL,
 * empty, too long, unknown) with no rows, as ClassDB does; the policy
 * functions raise an error that says which.
 *
 * Also here: how texts kept in shared memory (kill reasons, the names in
 * events and counters) stay valid.  They travel between databases of
 * different encodings and come from clients' startup packets, so they are
 * kept in UTF-8, cut at a character boundary, and shown in a database of
 * another encoding converted to it, with '?' for each character it lacks.
 * A victim converts its DETAIL while it reports its FATAL, when it may
 * read no catalog: the conversion is looked up before, as the login's
 * transaction commits (as PostgreSQL looks up its own).
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "mb/pg_wchar.h"
#include "parser/scansup.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "connmgr.h"

/* The role name that input stands for (possibly empty or too long). */
static char *
fold_role_name(const char *input)
{
	int			len = strlen(input);

	if (len >= 2 && input[0] == '"' && input[len - 1] == '"')
	{
		char	   *out = palloc(len);
		int			j = 0;

		for (int i = 1; i < len - 1; i++)
		{
			out[j++] = input[i];
			if (input[i] == '"' && input[i + 1] == '"' && i + 1 < len - 1)
				i++;
		}
		out[j] = '\0';
		return out;
	}
	return downcase_identifier(input, len, false, false);
}

/*
 * The role name that argument argno stands for (possibly empty or too
 * long); *input is set to the argument as given.
 */
static char *
role_name_arg(FunctionCallInfo fcinfo, int argno, char **input)
{
	if (get_fn_expr_argtype(fcinfo->flinfo, argno) == NAMEOID)
	{
		*input = pstrdup(NameStr(*PG_GETARG_NAME(argno)));
		return *input;
	}
	*input = text_to_cstring(PG_GETARG_TEXT_PP(argno));
	return fold_role_name(*input);
}

/*
 * The role named by argument argno, or InvalidOid for a NULL, empty, too
 * long or unknown name.
 */
Oid
connmgr_classdb_role_arg(FunctionCallInfo fcinfo, int argno)
{
	char	   *input;
	char	   *name;

	if (PG_ARGISNULL(argno))
		return InvalidOid;
	name = role_name_arg(fcinfo, argno, &input);
	if (name[0] == '\0' || strlen(name) >= NAMEDATALEN)
		return InvalidOid;
	return get_role_oid(name, true);
}

/*
 * The role named by argument argno; *name is set to the role's name.
 * Raises an error for a NULL, empty, too long or unknown name.
 */
Oid
connmgr_role_arg(FunctionCallInfo fcinfo, int argno, const char **name)
{
	char	   *input;
	char	   *folded;
	Oid			role;

	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("role name must not be null")));
	folded = role_name_arg(fcinfo, argno, &input);
	if (folded[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_NAME),
				 errmsg("role name must not be empty")));
	if (strlen(folded) >= NAMEDATALEN)
		ereport(ERROR,
				(errcode(ERRCODE_NAME_TOO_LONG),
				 errmsg("role name \"%.*s...\" is too long",
						pg_mbcliplen(folded, strlen(folded), NAMEDATALEN - 1), folded),
				 errdetail("Role names have at most %d bytes.", NAMEDATALEN - 1)));
	role = get_role_oid(folded, true);
	if (!OidIsValid(role) && strcmp(input, folded) != 0 && input[0] != '"')
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("role \"%s\" does not exist", folded),
				 errhint("Role names are read like SQL identifiers: to keep upper-case letters, put the name in double quotes inside the string, as in '\"%s\"'.",
						 input)));
	if (!OidIsValid(role))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("role \"%s\" does not exist", folded)));
	*name = folded;
	return role;
}

/* The conversion from UTF-8 to the database's encoding; NULL if none. */
static FmgrInfo *utf8_to_database = NULL;
static bool conversion_looked_up = false;

/* At the commit of the login's transaction: look the conversion up. */
static void
look_up_conversion(XactEvent event, void *arg)
{
	int			encoding = GetDatabaseEncoding();
	Oid			proc;
	FmgrInfo   *finfo;

	if (event != XACT_EVENT_PRE_COMMIT || conversion_looked_up)
		return;
	conversion_looked_up = true;
	if (encoding == PG_UTF8 || encoding == PG_SQL_ASCII)
		return;
	proc = FindDefaultConversionProc(PG_UTF8, encoding);
	if (!OidIsValid(proc))
		return;
	finfo = MemoryContextAlloc(TopMemoryContext, sizeof(FmgrInfo));
	fmgr_info_cxt(proc, finfo, TopMemoryContext);
	utf8_to_database = finfo;
}

/*
 * Called once a client has authenticated, inside the transaction its login
 * commits: from then on, connmgr_from_shared_text() can convert.
 */
void
connmgr_prepare_text_conversion(void)
{
	static bool registered = false;

	if (!registered)
	{
		RegisterXactCallback(look_up_conversion, NULL);
		registered = true;
	}
}

/*
 * Convert the UTF-8 character c of len bytes into the database's encoding
 * at out (room for len * MAX_CONVERSION_GROWTH + 1 bytes); false,
 * and nothing written, if the database's encoding lacks it.  Never raises
 * an error.
 */
static bool
character_to_database(const char *c, int len, char *out)
{
	int			converted;

	if (utf8_to_database == NULL)
		return false;
	converted = DatumGetInt32(FunctionCall6(utf8_to_database,
											Int32GetDatum(PG_UTF8),
											Int32GetDatum(GetDatabaseEncoding()),
											CStringGetDatum(c),
											CStringGetDatum(out),
											Int32GetDatum(len),
											BoolGetDatum(true)));
	if (converted == len)
		return true;
	out[0] = '\0';
	return false;
}

/* Replace every byte of s[0 .. len) that is not ASCII by '?'. */
static void
ascii_only(char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if ((unsigned char) s[i] >= 0x80)
			s[i] = '?';
}

/*
 * Copy src into dst (size bytes with the terminator) as valid UTF-8, cut
 * at a character boundary.  A text of the current database is converted
 * from its encoding; any other (from_database false: a startup packet's),
 * or one of a SQL_ASCII database, keeps its bytes if they are UTF-8 and
 * gets '?' for every non-ASCII byte otherwise.  Never raises an error.
 */
void
connmgr_to_shared_text(char *dst, const char *src, size_t size, bool from_database)
{
	int			encoding = from_database ? GetDatabaseEncoding() : PG_SQL_ASCII;
	char	   *utf8 = pstrdup(src ? src : "");
	size_t		len = strlen(utf8);

	if (encoding != PG_UTF8 && encoding != PG_SQL_ASCII &&
		pg_verifymbstr(utf8, len, true))
	{
		utf8 = pg_server_to_any(utf8, len, PG_UTF8);
		len = strlen(utf8);
	}
	if (!pg_verify_mbstr(PG_UTF8, utf8, len, true))
		ascii_only(utf8, len);
	len = pg_encoding_mbcliplen(PG_UTF8, utf8, len, size - 1);
	memcpy(dst, utf8, len);
	dst[len] = '\0';
}

/*
 * A text kept by connmgr_to_shared_text(), as the current database can
 * show it: as it is in a UTF8 or SQL_ASCII database, converted to the
 * encoding of any other, with one '?' for every character that encoding
 * lacks (for every non-ASCII one before the conversion has been looked up).
 * Never raises an error.
 */
char *
connmgr_from_shared_text(const char *utf8)
{
	int			encoding = GetDatabaseEncoding();
	char	   *result;
	int			j = 0;

	if (encoding == PG_UTF8 || encoding == PG_SQL_ASCII)
		return pstrdup(utf8);
	result = palloc0(strlen(utf8) * MAX_CONVERSION_GROWTH + 1);
	for (const unsigned char *p = (const unsigned char *) utf8; *p;)
	{
		int			len = (*p < 0x80) ? 1 : pg_utf_mblen(p);
		bool		whole = strnlen((const char *) p, len) == (size_t) len;

		if (*p < 0x80)
			result[j++] = (char) *p;
		else if (whole && character_to_database((const char *) p, len, result + j))
			j += strlen(result + j);
		else
			result[j++] = '?';
		for (int k = 0; k < len && *p; k++)
			p++;
	}
	result[j] = '\0';
	return result;
}
