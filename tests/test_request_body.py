"""A POST's body and key as sent, checked one function at a time: the content type, the
encoding, the inflater, the JSON parser and the Bearer header; each accepted form, and each
refused one with the status and message of its answer."""

import gzip
import zlib
from decimal import Decimal
from io import BytesIO

import pytest
from twisted.web.test.requesthelper import DummyRequest

from attolytics.http.answers import ApiError
from attolytics.http.native_body import bearer_token
from attolytics.http.body import check_content_type, decoded_body, inflate
from attolytics.http.strict_json import parse_json

pytestmark = pytest.mark.unit

DOCUMENT = b'{"secret_key": "k", "events": [{"a": 1}]}'


def request_with(headers: dict, body: bytes = b"") -> DummyRequest:
    request = DummyRequest([b""])
    for name, value in headers.items():
        request.requestHeaders.setRawHeaders(name.encode(), [value.encode("latin-1")])
    request.content = BytesIO(body)
    return request


def refusal(check, *args) -> tuple[int, str]:
    with pytest.raises(ApiError) as raised:
        check(*args)
    return raised.value.status, raised.value.body["error"]


def raw_deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


# The content type


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "Application/JSON",
        "application/json; charset=utf-8",
        "application/json; charset=UTF-8",
        "application/json;charset=utf8",
        'application/json; charset="utf-8"',
        "application/json; version=2",
        "text/plain",
        "text/plain;charset=UTF-8",
        # A beacon's charset is ignored: the body is read as UTF-8 JSON all the same.
        "text/plain; charset=latin-1",
    ],
)
def test_content_types_accepted(content_type):
    assert check_content_type(request_with({"Content-Type": content_type})) is None


def test_no_content_type_is_415():
    assert refusal(check_content_type, request_with({})) == (
        415, "Content-Type must be application/json"
    )


@pytest.mark.parametrize(
    "content_type, media_type",
    [
        ("text/html", "text/html"),
        ("application/x-www-form-urlencoded", "application/x-www-form-urlencoded"),
        ("Text/CSV; charset=utf-8", "text/csv"),
        ("application/jsonl", "application/jsonl"),
        ("", ""),
    ],
)
def test_other_content_types_are_415(content_type, media_type):
    assert refusal(check_content_type, request_with({"Content-Type": content_type})) == (
        415, f"Content-Type must be application/json, not {media_type!r}"
    )


@pytest.mark.parametrize("charset", ["latin-1", "utf-16", '"iso-8859-1"', ""])
def test_json_in_another_charset_is_415(charset):
    request = request_with({"Content-Type": f"application/json; charset={charset}"})
    assert refusal(check_content_type, request) == (415, "the only charset accepted is utf-8")


# The encoding


@pytest.mark.parametrize("encoding", [None, "identity", " Identity "])
def test_a_body_not_encoded_is_taken_as_it_is(encoding):
    headers = {"Content-Encoding": encoding} if encoding is not None else {}
    assert decoded_body(request_with(headers, DOCUMENT), 1000) == DOCUMENT


@pytest.mark.parametrize(
    "encoding, compress",
    [
        ("gzip", gzip.compress),
        ("GZIP", gzip.compress),
        (" gzip ", gzip.compress),
        ("deflate", zlib.compress),
        ("deflate", raw_deflate),
        ("Deflate", zlib.compress),
    ],
)
def test_compressed_bodies_are_inflated(encoding, compress):
    request = request_with({"Content-Encoding": encoding}, compress(DOCUMENT))
    assert decoded_body(request, 1000) == DOCUMENT


@pytest.mark.parametrize("encoding", ["br", "compress", "zstd", "gzip, deflate"])
def test_other_encodings_are_415(encoding):
    request = request_with({"Content-Encoding": encoding}, gzip.compress(DOCUMENT))
    assert refusal(decoded_body, request, 1000) == (
        415, f"Content-Encoding {encoding!r} is not supported; use gzip or deflate"
    )


# The inflater


@pytest.mark.parametrize("encoding, compress", [(b"gzip", gzip.compress), (b"deflate", zlib.compress),
                                                (b"deflate", raw_deflate)])
def test_a_body_that_inflates_to_the_limit_exactly_is_taken(encoding, compress):
    data = b"x" * 1000
    assert inflate(compress(data), encoding, 1000) == data


@pytest.mark.parametrize("encoding, compress", [(b"gzip", gzip.compress), (b"deflate", zlib.compress),
                                                (b"deflate", raw_deflate)])
def test_a_body_that_inflates_one_byte_past_the_limit_is_413(encoding, compress):
    assert refusal(inflate, compress(b"x" * 1001), encoding, 1000) == (
        413, "request body inflates past the limit of 1000 bytes"
    )


def test_a_small_bomb_is_413_through_decoded_body():
    bomb = gzip.compress(b"[" + b" " * 5_000_000 + b"]")
    assert len(bomb) < 10_000
    request = request_with({"Content-Encoding": "gzip"}, bomb)
    assert refusal(decoded_body, request, 10_000) == (
        413, "request body inflates past the limit of 10000 bytes"
    )


@pytest.mark.parametrize(
    "encoding, data",
    [
        (b"gzip", gzip.compress(DOCUMENT)[:-10]),
        (b"gzip", gzip.compress(DOCUMENT) + b"junk"),
        (b"gzip", b""),
        (b"deflate", zlib.compress(DOCUMENT)[:-4]),
        (b"deflate", zlib.compress(DOCUMENT) + b"junk"),
        (b"deflate", raw_deflate(DOCUMENT) + b"junk"),
    ],
)
def test_a_body_cut_short_or_with_trailing_bytes_is_400(encoding, data):
    assert refusal(inflate, data, encoding, 1000) == (
        400, f"body is not valid {encoding.decode()} data (cut short or trailing bytes)"
    )


@pytest.mark.parametrize(
    "encoding, data",
    [(b"gzip", b"not gzip at all"), (b"gzip", zlib.compress(DOCUMENT)), (b"deflate", b"\xff" * 20)],
)
def test_a_body_that_is_not_compressed_data_is_400(encoding, data):
    assert refusal(inflate, data, encoding, 1000) == (400, f"body is not valid {encoding.decode()} data")


# The JSON


@pytest.mark.parametrize(
    "raw, parsed",
    [
        (DOCUMENT, {"secret_key": "k", "events": [{"a": 1}]}),
        (b"[]", []),
        (b'"text"', "text"),
        (b'\xef\xbb\xbf{"a": 1}', {"a": 1}),  # a byte-order mark is skipped
        (b'{"a": {"b": 1}, "c": {"b": 2}}', {"a": {"b": 1}, "c": {"b": 2}}),
        (b'{"s": "\\u00e9\\ud83d\\ude00"}', {"s": "\u00e9\U0001F600"}),
        ('{"s": "é"}'.encode(), {"s": "é"}),
        (b"123456789012345678901234567890", 123456789012345678901234567890),
    ],
)
def test_json_accepted(raw, parsed):
    assert parse_json(raw) == parsed


@pytest.mark.parametrize(
    "raw, number",
    [(b"1.5", "1.5"), (b"0.1", "0.1"), (b"1.10", "1.10"), (b"1e400", "1E+400"), (b"-2.5e-3", "-0.0025")],
)
def test_numbers_with_a_fraction_or_exponent_keep_their_digits(raw, number):
    value = parse_json(raw)
    assert isinstance(value, Decimal) and str(value) == number


@pytest.mark.parametrize(
    "raw, error",
    [
        (b"[NaN]", "body is not valid JSON: NaN is not valid JSON"),
        (b"[Infinity]", "body is not valid JSON: Infinity is not valid JSON"),
        (b"[-Infinity]", "body is not valid JSON: -Infinity is not valid JSON"),
        (b'{"a": 1, "a": 2}', "body is not valid JSON: duplicate key 'a' in an object"),
        (b'[{"b": 1, "c": 2, "b": 3}]', "body is not valid JSON: duplicate key 'b' in an object"),
        (b"[" * 100000 + b"]" * 100000, "body is not valid JSON: nested too deeply"),
        (b"\xff", "body is not valid UTF-8 (byte 0)"),
        (b'{"secret_key": "\xff\xfe"}', "body is not valid UTF-8 (byte 16)"),
        (b"1e99999999999999999999999999999", "body holds a number out of any column's range"),
    ],
)
def test_json_refused_is_400(raw, error):
    assert refusal(parse_json, raw) == (400, error)


@pytest.mark.parametrize(
    "raw, where",
    [(b"", "Expecting value"), (b"{not json", "Expecting property name"), (b'{"a": 1} x', "Extra data")],
)
def test_json_the_decoder_cannot_read_is_400_with_its_reason(raw, where):
    # The reason is the json module's own words; only their start is pinned here.
    status, error = refusal(parse_json, raw)
    assert status == 400
    assert error.startswith(f"body is not valid JSON: {where}")


def test_a_duplicate_key_is_named_in_at_most_100_characters():
    key = "k" * 300
    status, error = refusal(parse_json, b'{"%s": 1, "%s": 2}' % (key.encode(), key.encode()))
    assert status == 400
    assert error == f"body is not valid JSON: duplicate key {key[:100]!r} in an object"


# The Bearer header


def test_no_authorization_header_gives_no_token():
    assert bearer_token(request_with({})) is None


@pytest.mark.parametrize(
    "header, token",
    [
        ("Bearer the-key", b"the-key"),
        ("bearer the-key", b"the-key"),
        ("BEARER the-key", b"the-key"),
        ("Bearer    the-key  ", b"the-key"),
        (" Bearer the-key", b"the-key"),
    ],
)
def test_bearer_tokens_accepted(header, token):
    assert bearer_token(request_with({"Authorization": header})) == token


@pytest.mark.parametrize(
    "header",
    ["Basic dXNlcjpwYXNz", "Bearer ", "Bearer", "Bearer    ", "", "Token the-key", "Bearerthe-key"],
)
def test_other_authorization_headers_are_401(header):
    assert refusal(bearer_token, request_with({"Authorization": header})) == (
        401, "Authorization must be Bearer <secret key>"
    )
