"""Schemathesis over the service's own OpenAPI spec: no 5xx, and every response matches the spec.

Bounded and derandomized (the same cases every run, so CI cannot pass on one run and fail the next;
widen max_examples by hand to hunt), in-process over ASGI; the TLS path is covered by test_api."""

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from test_api import make_service

from inference.api.app import create_app


@pytest.fixture
def service(tiny, tmp_path):
    """Closed in a finalizer: schemathesis ends the app's lifespan (which audits the stop) first."""
    # Images up to 256 px only: the point is the API layer, not rendering large random-weight images.
    service, _settings, keys, _ca = make_service(tiny, tmp_path, max_side=256)
    yield service, keys
    service.queue.shutdown()
    service.audit.close()


def test_no_server_errors_and_responses_match_the_spec(service):
    service, keys = service
    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(service))
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=25,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
            derandomize=True,
        )
        def check(case):
            response = case.call(headers={"X-API-KEY": keys["main"]})
            assert response.status_code < 500, f"{case.method} {case.path}: {response.text}"
            # Not positive_data_acceptance: schema-valid requests are refused for real reasons
            # (unknown model, a webhook outside the allowlist), each with a 4xx naming the field.
            case.validate_response(
                response,
                checks=[
                    not_a_server_error,
                    status_code_conformance,
                    content_type_conformance,
                    response_schema_conformance,
                ],
            )

        check()
