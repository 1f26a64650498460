import logging

from esrag.redact import redact
from query.api.accesslog import RedactKeys


def test_key_parameters_are_redacted_and_the_rest_kept():
    assert redact("/dashboard?key=s3cret") == "/dashboard?key=***"
    assert redact("/x?a=1&key=s3cret&b=2") == "/x?a=1&key=***&b=2"
    assert redact("/x?monkey=1&keys=2") == "/x?monkey=1&keys=2"


def test_filter_rewrites_uvicorn_access_record_args():
    record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
                               ("127.0.0.1:5", "GET", "/dashboard?key=s3cret", "1.1", 303), None)
    assert RedactKeys().filter(record) is True
    assert record.getMessage() == '127.0.0.1:5 - "GET /dashboard?key=*** HTTP/1.1" 303'


def test_filter_rewrites_error_messages_with_service_urls():
    record = logging.LogRecord("uvicorn.error", logging.ERROR, __file__, 1,
                               "cannot reach redis://:p%40ss@redis:6379/0", None, None)
    assert RedactKeys().filter(record) is True
    assert record.getMessage() == "cannot reach redis://redis:6379/0"
