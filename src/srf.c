/*
 * srf.c
 *		Plumbing for the set-returning SQL functions: a materialized result.
 */
#include "postgres.h"

#include "funcapi.h"

#include "connmgr.h"

/*
 * Set up a materialized result set, of rows or (for SETOF a scalar type)
 * of single values: returns the tuplestore to fill.
 */
Tuplestorestate *
connmgr_begin_result_set(FunctionCallInfo fcinfo, TupleDesc *tupdesc)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	bool		rows = get_call_result_type(fcinfo, NULL, NULL) == TYPEFUNC_COMPOSITE;

	InitMaterializedSRF(fcinfo, rows ? 0 : MAT_SRF_USE_EXPECTED_DESC);
	*tupdesc = rsinfo->setDesc;
	return rsinfo->setResult;
}
