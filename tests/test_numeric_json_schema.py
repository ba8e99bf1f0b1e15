"""The JSON schema a numeric(precision, scale) column gives its property in /openapi.json: valid
JSON Schema 2020-12 for any precision and scale, and as strict as the column."""

import jsonschema_rs
import pytest

from attolytics.storage.column_types.numbers import Numeric

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("precision, scale", [(10, 2), (12, 0), (5, -3), (1, 3), (400, 330),
                                              (1000, 1000), (1, 1000), (1000, -1000)])
def test_numeric_columns_of_any_precision_and_scale_make_valid_schemas(precision, scale):
    schema = Numeric(precision, scale).json_schema()
    jsonschema_rs.meta.validate({"$schema": "https://json-schema.org/draft/2020-12/schema", **schema})
    assert schema.get("multipleOf", 1) > 0
    if "exclusiveMaximum" in schema:
        assert schema["exclusiveMaximum"] > 0 and schema["exclusiveMinimum"] < 0
    validator = jsonschema_rs.validator_for(schema)
    if (precision, scale) == (10, 2):
        assert validator.is_valid(12345678.99) and not validator.is_valid(100000000)
        assert not validator.is_valid(0.001)
