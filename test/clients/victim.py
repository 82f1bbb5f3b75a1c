#!/usr/bin/env python3
"""A psycopg2 client for connmgr's TAP tests: what a client library sees
when its connection is ended.

Usage: victim.py DSN.  Connects, prints its backend pid on a line of its
own, waits for a line on stdin (meanwhile the test ends the connection),
then runs SELECT 1 and prints what the error tells: its class, and each
line of its message as "text: ...".

It uses psycopg2's asynchronous interface (as green-thread drivers do):
in blocking mode psycopg2 2.9 runs queries with PQexec, which from libpq
14 on returns only the last error of a query, here "server closed the
connection unexpectedly", so the server's FATAL and DETAIL never reach
the exception.
"""
import sys

import psycopg2
import psycopg2.extras

conn = psycopg2.connect(sys.argv[1], async_=True)
psycopg2.extras.wait_select(conn)
cur = conn.cursor()
cur.execute("SELECT pg_backend_pid()")
psycopg2.extras.wait_select(conn)
print(cur.fetchone()[0], flush=True)
sys.stdin.readline()
try:
    cur.execute("SELECT 1")
    psycopg2.extras.wait_select(conn)
    print("error: none")
except psycopg2.Error as e:
    print("error:", type(e).__name__)
    for line in str(e).splitlines():
        print("text:", line)
sys.stdout.flush()
