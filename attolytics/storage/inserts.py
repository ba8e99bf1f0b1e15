"""How the rows of several requests become one round trip of SQL, and what became of each request.

Every table gets one INSERT per set of columns its rows leave to their DEFAULT, its rows
travelling as one JSON parameter that PostgreSQL expands and casts with each column type's own
input function. A key repeated within the batch is sent once. Rows of a table that skips
duplicates first go in as any others (ON CONFLICT costs PostgreSQL about twice the work per row,
and a resent event is rare); when its unique index refuses one, `skipping_sql` inserts with ON
CONFLICT DO NOTHING instead and says which of the rows it stored.
"""

from decimal import Decimal
from itertools import chain
from operator import itemgetter

import orjson

from attolytics.outcomes import Stored
from attolytics.storage.identifiers import quote_name, quote_table
from attolytics.storage.row_default import DEFAULT
from attolytics.storage.table import Table

_MAX_CACHED_STATEMENTS = 64


class Batch:
    """The rows of `requests` (each a list of TableRows) as SQL: `sql` and `params`, and,
    when a table skips duplicates (`skips`), `skipping_sql`, which takes the same params and
    whose result says which rows were stored (see outcomes())."""

    def __init__(self, requests: list[list[tuple[Table, list[tuple]]]]):
        self._rows = [sum(len(rows) for _, rows in batches) for batches in requests]
        # Per request: table name -> events skipped as duplicates; None for a request that
        # writes to no table that skips them.
        self._duplicates: list[dict | None] = [None] * len(requests)
        # Per statement that reports: its table, and per row its request and whether it counts
        # as stored whatever the result says (a key with a NULL cannot conflict).
        self._keyed: list[tuple[str, list[int], list[bool]]] = []
        plain, params = [], []  # every statement, as sent first
        # skipping_sql: every insert as a CTE of one statement, in the same order (foreign keys
        # are checked at its end), and the rows each keyed one stored.
        entries, reports = [], []
        for table, chunks in _merged(requests).items():
            if table.key:
                chunks = self._distinct(table, chunks)
            for defaulted, group in _by_defaulted(table, chunks).items():
                rows = group[0][1] if len(group) == 1 else list(chain.from_iterable(rs for _, rs in group))
                statement = _statement(table, defaulted)
                plain.append(statement)
                params.append(_rows_json(rows))
                if table.key and not set(defaulted) & set(table.key_positions):
                    ctes, report = _keyed_statement(table, defaulted, len(self._keyed))
                    entries.append(ctes)
                    reports.append(report)
                    sure = [None in key for key in map(_key_of(table), rows)]
                    owners = [owner for owner, rs in group for _ in rs]
                    self._keyed.append((table.name, owners, sure))
                else:
                    entries.append(f"p{len(entries)} AS ({statement})")
        self.sql = "; ".join(plain)
        self.params = tuple(params)
        self.skips = bool(reports)
        if reports:
            self.skipping_sql = f"WITH {', '.join(entries)} {' UNION ALL '.join(reports)}"


    def outcomes(self, stored_rows=None) -> list[Stored]:
        """What became of each request: once `sql` ran, with no result; once `skipping_sql` ran,
        given its result, (statement, position) of each row its keyed statements stored."""
        duplicates = [None if d is None else dict(d) for d in self._duplicates]
        if stored_rows is None:  # every row sent was stored
            return self._stored(duplicates)
        stored = {(statement, position) for statement, position in stored_rows}
        for statement, (table, owners, sure) in enumerate(self._keyed):
            for position, (owner, kept) in enumerate(zip(owners, sure), start=1):
                if not kept and (statement, position) not in stored:
                    duplicates[owner][table] = duplicates[owner].get(table, 0) + 1
        return self._stored(duplicates)

    def _stored(self, duplicates: list) -> list[Stored]:
        return [Stored(rows, None) if d is None else Stored(rows - sum(d.values()), sum(d.values()), d)
                for rows, d in zip(self._rows, duplicates)]

    def _distinct(self, table: Table, chunks: list) -> list:
        """The chunks without the rows whose key was seen earlier in the batch, which count as
        duplicates. A key with a NULL or a DEFAULT in it identifies nothing, so its row is kept."""
        seen, kept = set(), []
        key_of = _key_of(table)
        for owner, rows in chunks:
            counts = self._duplicates[owner]
            if counts is None:
                counts = self._duplicates[owner] = {}
            fresh = []
            for row in rows:
                key = key_of(row)
                if key not in seen or None in key or DEFAULT in key:
                    seen.add(key)
                    fresh.append(row)
                else:
                    counts[table.name] = counts.get(table.name, 0) + 1
            kept.append((owner, fresh))
        return kept


def _key_of(table: Table):
    """A function from a row of `table` to its key, a tuple of the key's values."""
    return itemgetter(*table.key_positions) if len(table.key_positions) > 1 else (
        lambda row, position=table.key_positions[0]: (row[position],))


def _merged(requests) -> dict:
    """All rows of the requests, per table, in order: Table -> [(request number, rows)]."""
    merged: dict[Table, list] = {}
    for owner, batches in enumerate(requests):
        for table, rows in batches:
            merged.setdefault(table, []).append((owner, rows))
    return merged


def _by_defaulted(table: Table, chunks: list) -> dict:
    """The chunks split by the positions of the columns their rows leave to their DEFAULT."""
    if not table.defaultable:
        return {(): chunks}
    groups: dict[tuple, dict] = {}
    for owner, rows in chunks:
        for row in rows:
            defaulted = tuple(i for i in table.defaultable if row[i] is DEFAULT)
            groups.setdefault(defaulted, {}).setdefault(owner, []).append(row)
    return {defaulted: list(by_owner.items()) for defaulted, by_owner in groups.items()}


def _name(name: str) -> str:
    """A quoted identifier for a statement with placeholders: psycopg2 reads % as one, even
    inside a quoted identifier."""
    return quote_name(name).replace("%", "%%")


def _present(table: Table, defaulted: tuple) -> tuple[str, str]:
    """The column list, and the casts of the JSON array `r` to those columns, of a statement."""
    present = [(i, c) for i, c in enumerate(table.ordered) if i not in defaulted]
    names = ", ".join(_name(c.name) for _, c in present)
    values = ", ".join(f"(r->>{i})::pg_catalog.{_name(c.type.typname)} AS {_name(c.name)}"
                       for i, c in present)
    return names, values


def _elements(table: Table) -> str:
    """The rows' JSON parameter split into rows: as jsonb, which PostgreSQL reads once (as json,
    it reads each row's text again for each column: a quarter more of its CPU per row); but as
    json for a table with a float column, since jsonb's numbers have no negative zero."""
    if any(c.type.typname in ("float4", "float8") for c in table.ordered):
        return "json_array_elements(%s::json)"
    return "jsonb_array_elements(%s::jsonb)"


def _cached(table: Table, key: tuple, make) -> str:
    cache = table.sql_cache
    statement = cache.get(key)
    if statement is None:
        if len(cache) >= _MAX_CACHED_STATEMENTS:
            cache.clear()  # clients choose which defaults they use: bound it
        statement = cache[key] = make()
    return statement


def _statement(table: Table, defaulted: tuple) -> str:
    """INSERT the rows of one JSON parameter."""
    def make():
        names, values = _present(table, defaulted)
        return (f"INSERT INTO {quote_table(table.name).replace('%', '%%')} ({names}) SELECT {values} "
                f"FROM {_elements(table)} AS r")
    return _cached(table, ("plain", defaulted), make)


def _keyed_statement(table: Table, defaulted: tuple, number: int) -> tuple[str, str]:
    """Two CTEs, s<number> (the rows, numbered) and i<number> (the INSERT, in that order,
    skipping rows whose key is stored already, returning the key of each row it stored); and the
    SELECT of the position of each stored row. Of rows PostgreSQL takes for equal (char padding,
    jsonb key order, ...), the first is the one stored and reported."""
    def make():
        names, values = _present(table, defaulted)
        key = ", ".join(_name(name) for name in table.key)
        position = _position(table)
        rows, inserted = f"s{number}", f"i{number}"
        ctes = (f"{rows} AS (SELECT {position}, {values} "
                f"FROM {_elements(table)} WITH ORDINALITY AS a(r, {position})), "
                f"{inserted} AS (INSERT INTO {quote_table(table.name).replace('%', '%%')} ({names}) "
                f"SELECT {names} FROM {rows} ORDER BY {position} "
                f"ON CONFLICT ({key}) DO NOTHING RETURNING {key})")
        report = (f"(SELECT DISTINCT ON ({key}) {number}, {rows}.{position} FROM {rows} "
                  f"JOIN {inserted} USING ({key}) ORDER BY {key}, {rows}.{position})")
        return ctes, report
    return _cached(table, ("keyed", defaulted, number), make)


def _position(table: Table) -> str:
    """The column of a row's position among its statement's rows: a name no column has."""
    name = "attolytics#row"
    while name in table.columns:
        name += "#"
    return _name(name)


def _rows_json(rows: list[tuple]) -> str:
    # orjson writes datetimes and dates in ISO 8601 itself, with the offset when there is one.
    return orjson.dumps(rows, default=_json_value).decode()


def _json_value(value):
    """Text for the values orjson cannot write itself; PostgreSQL reads each with its type's input."""
    if isinstance(value, Decimal):
        return str(value)
    if value is DEFAULT:
        return None
    raise TypeError(f"cannot send {type(value).__name__} to PostgreSQL")
