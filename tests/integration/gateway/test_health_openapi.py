"""``/healthz``, ``/readyz`` with each dependency up or down; schemathesis on ``/openapi.json``."""

from __future__ import annotations

import time
from collections import Counter

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.integration.conftest import Stack
from tests.integration.gateway.conftest import Gateway, GatewayStarter
from tests.support import free_port

pytestmark = pytest.mark.integration

EXAMPLES_PER_OPERATION_AND_MODE = 50
RETRY_LATER = {"runtime_unavailable", "broker_unavailable"}


def test_healthz_and_readyz_when_everything_is_up(stack: Stack, gateway: Gateway) -> None:
    anonymous = gateway.client()
    assert anonymous.get("/healthz").json() == {"status": "ok"}
    ready = anonymous.get("/readyz")
    assert ready.status_code == 200, ready.text
    body = ready.json()
    assert body["ready"] is True
    assert set(body["checks"]) == {"broker", "store", "runtime"}
    assert all(check["ok"] and check["detail"] for check in body["checks"].values())


def test_readyz_names_the_runtime_when_it_is_down(
    stack: Stack, start_gateway: GatewayStarter
) -> None:
    gateway = start_gateway(runtime_url=f"http://127.0.0.1:{free_port()}")
    answer = gateway.client().get("/readyz")
    assert answer.status_code == 503
    checks = answer.json()["checks"]
    assert checks["broker"]["ok"] and checks["store"]["ok"]
    assert not checks["runtime"]["ok"] and "unreachable" in checks["runtime"]["detail"]
    assert gateway.client().get("/healthz").status_code == 200


def test_readyz_names_the_broker_when_it_is_down(
    stack: Stack, start_gateway: GatewayStarter
) -> None:
    gateway = start_gateway(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    started = time.monotonic()
    answer = gateway.client().get("/readyz")
    assert time.monotonic() - started < 5
    assert answer.status_code == 503
    checks = answer.json()["checks"]
    assert not checks["broker"]["ok"] and "broker" in checks["broker"]["detail"]
    assert checks["store"]["ok"] and checks["runtime"]["ok"]
    # And a request needing the broker says so with a stable code, not a 500.
    key = gateway.key("acme")
    submit = gateway.client(key).post(
        "/v1/jobs", json={"messages": [{"role": "user", "content": "hi"}]}
    )
    assert submit.status_code == 503, submit.text
    assert submit.json()["error"]["code"] == "broker_unavailable"


# Bounded by count (EXAMPLES_PER_OPERATION_AND_MODE per operation and mode), not by a clock: about
# 80 s on a quiet 2-core machine; the timeout only catches a hang.
@pytest.mark.timeout(400)
def test_schemathesis_finds_no_server_errors(stack: Stack, start_gateway: GatewayStarter) -> None:
    gateway = start_gateway(rate_limit_per_second="100000", rate_limit_burst="100000")
    headers = {"Authorization": f"Bearer {gateway.key('acme')}"}
    schema = schemathesis.openapi.from_url(f"{gateway.url}/openapi.json")
    checks = [
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
    ]
    statuses: Counter[int] = Counter()
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 8
    for operation in operations:
        raw = schema.raw_schema["paths"][operation.path][operation.method.lower()]
        takes_input = bool(raw.get("parameters") or raw.get("requestBody"))
        modes = [GenerationMode.POSITIVE] + ([GenerationMode.NEGATIVE] if takes_input else [])
        for mode in modes:

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=EXAMPLES_PER_OPERATION_AND_MODE,
                deadline=None,
                database=None,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            def exercise(case: schemathesis.Case) -> None:
                response = case.call_and_validate(
                    base_url=gateway.url, headers=headers, checks=checks, timeout=10
                )
                statuses[response.status_code] += 1
                # Never a 500. A 503 only as a stable "try again" (a webhook host whose DNS
                # is temporarily unresolvable: there is no DNS in this sandbox).
                if response.status_code >= 500:
                    code = response.json()["error"]["code"]
                    assert response.status_code == 503 and code in RETRY_LATER, response.text

            exercise()
    # It really exercised the API: accepted jobs, refused bad input, looked up unknown ids.
    assert statuses[201] > 0 and statuses[400] > 0 and statuses[404] > 0, statuses
    assert sum(statuses.values()) >= 150, statuses
    assert gateway.client().get("/healthz").status_code == 200
