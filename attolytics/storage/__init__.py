"""The storage side: column types, tables and rows, the catalog and DDL, the writer, the
connection pool and the embedded PostgreSQL. It knows nothing of HTTP."""
