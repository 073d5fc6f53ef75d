"""The BentoML service: churn risk with reasons and win-back actions, for CRM systems and retention teams.

Start it with ``churn serve`` (or ``bentoml serve serving.service:ChurnService --port 3000`` with
the ``CHURN_*`` settings in the environment). Endpoints:

- ``POST /predict``: customers by id (or with their own features) -> probability, band, tier,
  pyramid, 12-month revenue, value at risk, reasons and actions; the model and as-of date named.
- ``POST /actions``: a playbook action recorded as done (by its ``key``), append-only, idempotent on the client's ``id``.
- ``POST /risk_list``: the ranked list with filters and paging (the newest ``churn score`` run,
  or the in-memory snapshot scored on the spot when there is none).
- BentoML's ``/healthz``, ``/livez``, ``/readyz`` (ready once model and features are loaded) and
  ``/metrics`` (with the served model's age and the newest run's drift, :mod:`serving.monitoring`):
  the only paths open without the API key.

A page (``/ui``) can be mounted with ``bentoml.asgi_app(app, path="/ui")`` on :class:`ChurnService`;
its handlers reach the running service through ``bentoml.get_current_service()`` and its
``runtime`` (the state, the scorer, the snapshot).
"""

from __future__ import annotations

import logging
import os
import signal
from datetime import date, datetime
from typing import Any, Literal

import bentoml
import psutil
from bentoml.exceptions import BentoMLException
from pydantic import ValidationError
from starlette.responses import JSONResponse

from churn.settings import load_settings
from features.redaction import redact_logs
from serving.actions import ActionConflict, ActionDone, ActionRecorded, Outcome
from serving.middleware import ApiKeyMiddleware, BodyLimitMiddleware, JsonBodyMiddleware, label_metrics_by_route
from serving.monitoring import Monitor
from serving.page import page_app
from serving.runtime import API_THREADS, NotReady, RequestError, Runtime, StartupError, check_startup
from serving.schemas import CustomerIn, PredictRequest, PredictResponse, RiskListRequest, RiskListResponse
from serving.store import TryLater

logger = logging.getLogger("churn.serving")
BENTOML_HTTP_LOGGER = "bentoml._internal.server.http_app"


class ClientErrorsWithoutTraceback(logging.Filter):
    """BentoML logs every rejected request body at ERROR with its traceback: a client's mistake is one INFO line."""

    def filter(self, record: logging.LogRecord) -> bool:
        err = record.exc_info[1] if record.exc_info else None
        status = getattr(getattr(err, "error_code", None), "value", 500)
        if isinstance(err, ValidationError) or (isinstance(err, BentoMLException) and 400 <= int(status) < 500):
            record.msg = f"{record.getMessage()}: client error: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
            record.args = ()
            record.exc_info = None
            record.exc_text = None
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


label_metrics_by_route()
logging.getLogger(BENTOML_HTTP_LOGGER).addFilter(ClientErrorsWithoutTraceback())


def _error(
    status: int, message: str, loc: list[str | int] | None = None, kind: str = "value_error", headers: dict[str, str] | None = None
) -> JSONResponse:
    detail = [{"type": kind, "loc": loc, "msg": message}] if loc is not None else []
    return JSONResponse({"error": message, "detail": detail}, status_code=status, headers=headers)


def _stop_server(reason: str) -> None:
    """Stop the whole ``bentoml serve`` process, not only this worker (which would be restarted forever)."""
    logger.error("churn service cannot start: %s", reason)
    parent = os.getppid()
    try:
        cmdline = " ".join(psutil.Process(parent).cmdline())
    except psutil.Error:  # the parent is gone or not ours to read: do not guess
        cmdline = ""
    if "bentoml" in cmdline:
        os.kill(parent, signal.SIGTERM)


@bentoml.asgi_app(page_app, path="/ui")
@bentoml.service(name="churn", traffic={"timeout": 120}, threads=API_THREADS)
class ChurnService:
    """Churn risk of active business customers, with reasons and win-back actions."""

    def __init__(self) -> None:
        redact_logs("churn.serving")  # no database password in the service's log
        settings = load_settings()
        try:
            check_startup(settings)
        except Exception as err:  # noqa: BLE001 - any failed check stops the whole server, saying why
            _stop_server(str(err))
            raise SystemExit(f"churn service cannot start: {err}") from None
        self.runtime = Runtime(settings)
        self.runtime.on_refresh = Monitor().update
        self.runtime.start()

    def __is_ready__(self) -> bool:
        return self.runtime.ready

    @bentoml.on_shutdown
    def _shutdown(self) -> None:
        self.runtime.stop()

    @bentoml.api(input_spec=PredictRequest, route="/predict")
    def predict(
        self, customers: list[CustomerIn], as_of: date | None = None, explain: Literal["auto", "all", "none"] = "auto"
    ) -> PredictResponse:
        """Churn risk, reasons and win-back actions per customer.

        Send ``{"customers": [{"customer_id": "C000123"}]}``; a customer may instead carry its own
        ``features``. Unknown customers get an error item; the others are still answered.
        """
        request = PredictRequest.model_construct(customers=customers, as_of=as_of, explain=explain)
        return self._answer(lambda: self.runtime.predict(request))

    @bentoml.api(input_spec=RiskListRequest, route="/risk_list")
    def risk_list(
        self,
        tier: list[str] | None = None,
        pyramid: list[str] | None = None,
        region: list[str] | None = None,
        account_manager: list[str] | None = None,
        risk_band: list[str] | None = None,
        stage: list[str] | None = None,
        min_probability: float | None = None,
        sort: Literal["value_at_risk", "probability"] = "value_at_risk",
        limit: int = 50,
        offset: int = 0,
        explain: bool = True,
    ) -> RiskListResponse:
        """The ranked risk list: filter by stage, tier, pyramid, region, account manager, band, probability; page with limit/offset."""
        request = RiskListRequest.model_construct(
            tier=tier, pyramid=pyramid, region=region, account_manager=account_manager, risk_band=risk_band, stage=stage,
            min_probability=min_probability, sort=sort, limit=limit, offset=offset, explain=explain,
        )
        return self._answer(lambda: self.runtime.risk_list(request))

    @bentoml.api(input_spec=ActionDone, route="/actions")
    def actions(
        self, id: str, customer_id: str, action: str, owner: str, done_at: datetime, outcome: Outcome, note: str = ""
    ) -> ActionRecorded:
        """Record a playbook action as done (append-only; posting the same id again stores it once).

        Send ``{"id": "crm-123", "customer_id": "C000123", "action": "orders_reengagement_call", "owner": "Anna Li",
        "done_at": "2026-01-05T10:30:00", "outcome": "reached", "note": "new range sent"}``.
        """
        record = ActionDone.model_construct(id=id, customer_id=customer_id, action=action, owner=owner, done_at=done_at, outcome=outcome, note=note)
        return self._answer(lambda: self.runtime.record_action(record))

    def _answer(self, produce: Any) -> Any:
        try:
            return produce()
        except ActionConflict as err:
            return _error(409, str(err), ["id"], "conflict")
        except RequestError as err:
            return _error(400, str(err), err.loc, err.kind)
        except NotReady as err:
            return _error(503, str(err))
        except StartupError as err:
            return _error(503, str(err))
        except TryLater as err:
            return _error(503, str(err), headers={"Retry-After": str(err.retry_after)})


# mypy does not apply class decorators (python/mypy#3135): ChurnService is a bentoml Service here.
ChurnService.add_asgi_middleware(ApiKeyMiddleware)  # type: ignore[attr-defined]
ChurnService.add_asgi_middleware(BodyLimitMiddleware)  # type: ignore[attr-defined]
ChurnService.add_asgi_middleware(JsonBodyMiddleware)  # type: ignore[attr-defined]
