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
 */
#include "postgres.h"

#include "mb/pg_wchar.h"
#include "parser/scansup.h"
#include "catalog/pg_type.h"
#include "utils/acl.h"
#include "utils/builtins.h"

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
