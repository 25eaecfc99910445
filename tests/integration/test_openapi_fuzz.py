"""schemathesis against our own OpenAPI on a live server: every operation, generated valid and
invalid requests, no 5xx, and every answer as documented (status, content type, schema)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from schemathesis import GenerationMode
from schemathesis.core.result import Err
from schemathesis.generation.case import Case
from schemathesis.schemas import APIOperation, BaseSchema
from schemathesis.specs.openapi.checks import positive_data_acceptance

from services.adapters.settings import Settings
from services.http import create_app
from tests.support.http import auth
from tests.support.server import serving

pytestmark = [
    pytest.mark.integration,
    # schemathesis's own strategies draw from `random`; not ours to fix.
    pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning"),
]
REGION = "midden-nederland"
SERVICES = ("ingest", "dispatcher")  # the two that answer HTTP beyond the operations routes
# An endless event stream cannot be fuzzed request by request; it has its own tests.
STREAMS = {"GET /v1/alerts/stream"}


@pytest.fixture(scope="module")
def live_url(migrated: Settings) -> Iterator[str]:
    with serving(create_app(migrated, services=SERVICES)) as url:
        yield url


@pytest.fixture(scope="module")
def api_schema(live_url: str) -> BaseSchema:
    """The schema as the live server publishes it."""
    return schemathesis.openapi.from_url(f"{live_url}/openapi.json")


@pytest.fixture(scope="module")
def role_headers(migrated: Settings) -> dict[str, dict[str, str]]:
    """A caller allowed on each route, so generated requests get past auth and into the code
    (an admin where no other role is named); the callers that must be refused are the role
    matrices' business."""
    operator = auth(migrated, "operator", sub="op-1", region=REGION)
    return {
        "POST /v1/protection-orders": auth(migrated, "cjib", sub="cjib"),
        "GET /v1/protection-orders/{order_id}": auth(migrated, "admin", sub="admin"),
        "GET /v1/protection-orders": auth(migrated, "probation", sub="po-17"),
        "GET /v1/lookup": operator,
        "GET /v1/alerts": operator,
        "POST /v1/victim-reports": auth(migrated, "victim-support", sub="vs-1", region=REGION),
    }


# Collected from the app itself so that a new route is fuzzed without anyone listing it here.
# (schemathesis's own pytest plugin reads a private pytest attribute gone in pytest 9, so the
# operations are driven through their hypothesis strategies directly.)
Operation = APIOperation[Any, Any, Any, Any]


def _operations(schema: BaseSchema) -> dict[str, Operation]:
    found: dict[str, Operation] = {}
    for result in schema.get_all_operations():
        if isinstance(result, Err):
            raise AssertionError(f"our OpenAPI does not load: {result.err()}")
        found[result.ok().label] = result.ok()
    return found


OPERATIONS = [
    label
    for label in _operations(
        schemathesis.openapi.from_dict(create_app(Settings(), services=SERVICES).openapi())
    )
    if label not in STREAMS
]


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
@pytest.mark.parametrize("operation", OPERATIONS)
def test_every_operation_answers_as_documented(
    operation: str,
    mode: GenerationMode,
    api_schema: BaseSchema,
    live_url: str,
    role_headers: dict[str, dict[str, str]],
) -> None:
    found = _operations(api_schema)
    assert operation in found, f"{operation} is no longer in the served OpenAPI"
    under_test = found[operation]
    if mode is GenerationMode.NEGATIVE and not _has_inputs(under_test):
        pytest.skip(f"{operation} takes no input to make invalid")
    headers = role_headers.get(operation, role_headers["GET /v1/protection-orders/{order_id}"])

    @given(case=under_test.as_strategy(mode, headers=headers))
    @hypothesis_settings(
        max_examples=50,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    def answers_as_documented(case: Case[Operation]) -> None:
        # Every default check (no 5xx; status, content type, headers and body as documented;
        # schema-invalid input refused) except "schema-valid input accepted": the schema cannot
        # say that a ring must close or that a lookup takes a person or a place, so a valid
        # looking request may rightly get a 422 naming the field.
        response = case.call_and_validate(
            base_url=live_url, excluded_checks=[positive_data_acceptance]
        )
        statuses[response.status_code] += 1

    statuses: Counter[int] = Counter()
    answers_as_documented()
    # Guard against a vacuous pass: the caller's token reached the route, so not every request
    # stopped at authentication.
    assert set(statuses) - {401, 403}, f"{operation}: only auth refusals {dict(statuses)}"


def _has_inputs(operation: Operation) -> bool:
    # The bearer token is supplied, not generated: a route whose only input it is has
    # nothing to make invalid.
    headers = [h for h in operation.headers if h.name.lower() != "authorization"]
    return bool(
        len(operation.query) or len(operation.path_parameters) or headers
        or list(operation.body)
    )  # fmt: skip
