"""What the declared tables of a configuration mean: the column type each column's name stands for."""

from typing import Mapping

from attolytics.config import ColumnDecl, Config, ConfigError
from attolytics.storage.column_types import ColumnType, Text, for_declaration

# table name -> column name -> type
DeclaredTypes = Mapping[str, Mapping[str, ColumnType]]

_KNOWN = ("bool, i32, i64, f32, f64, string, timestamp, or a PostgreSQL type such as text, "
          "varchar(n), numeric(p,s), jsonb, uuid, date")


def declared_types(config: Config) -> DeclaredTypes:
    """The type of every declared column; a ConfigError names the file and key of a type nobody
    knows, or of a header that would fill a column that is not a string."""
    return {
        table.name: {column.name: _column_type(config, column) for column in table.columns}
        for table in config.tables.values()
    }


def _column_type(config: Config, column: ColumnDecl) -> ColumnType:
    column_type = for_declaration(column.type_name)
    if column_type is None:
        raise ConfigError(f"{config.path}: {column.key}.type: unknown column type "
                          f"{column.type_name!r}; expected {_KNOWN}")
    if column.header is not None and not isinstance(column_type, Text):
        raise ConfigError(f"{config.path}: {column.key}.header: a header fills only string columns, "
                          f"not {column_type.ddl}")
    return column_type
