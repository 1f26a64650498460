import logging

from query.api.accesslog import RedactKeys, redact_query_keys


def test_key_parameters_are_redacted_and_the_rest_kept():
    assert redact_query_keys("/dashboard?key=s3cret") == "/dashboard?key=***"
    assert redact_query_keys("/x?a=1&key=s3cret&b=2") == "/x?a=1&key=***&b=2"
    assert redact_query_keys("/x?monkey=1&keys=2") == "/x?monkey=1&keys=2"


def test_filter_rewrites_uvicorn_access_record_args():
    record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
                               ("127.0.0.1:5", "GET", "/dashboard?key=s3cret", "1.1", 303), None)
    assert RedactKeys().filter(record) is True
    assert record.getMessage() == '127.0.0.1:5 - "GET /dashboard?key=*** HTTP/1.1" 303'
