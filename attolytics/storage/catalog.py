"""What the database has: a table's columns and indexes, read from PostgreSQL's catalog."""

from typing import NamedTuple

from attolytics.storage.identifiers import quote_table


class CatalogColumn(NamedTuple):
    """A column as pg_attribute describes it."""

    name: str
    typname: str
    sql_type: str  # format_type(): "character varying(20)", "numeric(10,2)", ...
    typmod: int
    not_null: bool
    has_default: bool
    generated: bool  # GENERATED ... STORED, or an identity column that refuses values


class NotATable(Exception):
    """The name belongs to a relation rows cannot be inserted into (a view, a sequence, ...)."""


_RELATION_SQL = "SELECT c.oid, c.relkind FROM pg_class c WHERE c.oid = to_regclass(%s)"

_COLUMNS_SQL = """
SELECT a.attname, t.typname, format_type(a.atttypid, a.atttypmod), a.atttypmod,
       a.attnotnull, a.atthasdef OR a.attidentity <> '', a.attgenerated <> '' OR a.attidentity = 'a'
FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum
"""

# Whether a relation of this name exists in the schema of this table: what CREATE INDEX IF NOT
# EXISTS looks at, since an index always lives in its table's schema.
_RELATION_BESIDE_SQL = """
SELECT EXISTS (
    SELECT 1 FROM pg_class i
    WHERE i.relname = %s AND i.relnamespace = (SELECT relnamespace FROM pg_class WHERE oid = to_regclass(%s))
)
"""

# The key column sets (INCLUDE columns left out) of a table's unique indexes that ON CONFLICT
# can name: on columns, not expressions, for every row (no WHERE), checked at once (not
# deferrable), usable, and with NULLs distinct (a NULL id must never conflict; the column is
# read as JSON since PostgreSQL before 15 has none).
_UNIQUE_KEYS_SQL = """
SELECT array(SELECT a.attname FROM unnest((i.indkey::int2[])[0:i.indnkeyatts - 1]) AS k
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k)
FROM pg_index i
WHERE i.indrelid = to_regclass(%s) AND i.indisunique AND i.indimmediate AND i.indisvalid
  AND i.indpred IS NULL AND i.indexprs IS NULL
  AND NOT coalesce((to_jsonb(i) ->> 'indnullsnotdistinct')::boolean, false)
"""

_INSERTABLE_KINDS = {"r", "p"}  # ordinary and partitioned tables


async def table_columns(db, name: str) -> list[CatalogColumn] | None:
    """The columns of table `name` (schema-qualified or found on the search path), or None when
    there is no such relation. Raises NotATable when rows cannot be inserted into it.

    `db` runs queries: runQuery(sql, params) returning a Deferred of rows.
    """
    relation = await db.runQuery(_RELATION_SQL, (quote_table(name),))
    if not relation:
        return None
    oid, kind = relation[0]
    if kind not in _INSERTABLE_KINDS:
        raise NotATable(name)
    return [CatalogColumn(*row) for row in await db.runQuery(_COLUMNS_SQL, (oid,))]


async def has_relation_beside(db, table: str, name: str) -> bool:
    """Whether a relation called `name` (an index, say) exists in the schema of `table`."""
    rows = await db.runQuery(_RELATION_BESIDE_SQL, (name, quote_table(table)))
    return bool(rows[0][0])


async def unique_keys(db, table: str) -> list[frozenset[str]]:
    """The column sets of `table` that a unique index or primary key makes an ON CONFLICT target."""
    return [frozenset(columns) for (columns,) in await db.runQuery(_UNIQUE_KEYS_SQL, (quote_table(table),))]


async def has_rows(db, table: str) -> bool:
    """Whether the table holds a row."""
    rows = await db.runQuery(f"SELECT EXISTS (SELECT 1 FROM {quote_table(table)})")
    return bool(rows[0][0])


# How a partitioned table is split: its strategy ("r" range, "l" list, "h" hash) and key columns.
_PARTITION_KEY_SQL = """
SELECT p.partstrat, array(SELECT a.attname FROM unnest(p.partattrs::int2[]) AS k
                          JOIN pg_attribute a ON a.attrelid = p.partrelid AND a.attnum = k)
FROM pg_partitioned_table p
WHERE p.partrelid = to_regclass(%s)
"""

# A table's schema, and each of its partitions: schema, name and bounds as PostgreSQL writes them
# (read in the context of the table, which stays, not of a partition another service may drop).
_PARTITIONS_SQL = """
SELECT n.nspname,
       array(SELECT array[pn.nspname::text, c.relname::text, pg_get_expr(c.relpartbound, i.inhparent)]
             FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
             JOIN pg_namespace pn ON pn.oid = c.relnamespace
             WHERE i.inhparent = t.oid)
FROM pg_class t JOIN pg_namespace n ON n.oid = t.relnamespace
WHERE t.oid = to_regclass(%s)
"""


class Partition(NamedTuple):
    """One partition of a table."""

    schema: str
    name: str
    bound: str  # "FOR VALUES FROM ('2026-11-30 00:00:00+00') TO (...)", or "DEFAULT"


class Partitions(NamedTuple):
    """A table's schema and its partitions, as the catalog lists them."""

    schema: str
    found: list[Partition]


async def partition_key(db, table: str) -> tuple[str, list[str]] | None:
    """How `table` is partitioned: ("range", ["ts"]), say; None for a table that is not."""
    rows = await db.runQuery(_PARTITION_KEY_SQL, (quote_table(table),))
    if not rows:
        return None
    strategy, columns = rows[0]
    return {"r": "range", "l": "list", "h": "hash"}.get(strategy, strategy), list(columns)


async def partitions(db, table: str) -> Partitions:
    """The partitions of an existing table."""
    schema, found = (await db.runQuery(_PARTITIONS_SQL, (quote_table(table),)))[0]
    return Partitions(schema, [Partition(*row) for row in found])
