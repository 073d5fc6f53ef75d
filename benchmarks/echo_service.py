"""A bare BentoML service that echoes its input: the yardstick for the churn service's latency.

Same framework, same worker model, same JSON shape in (``{"customers": [...]}``), no model, no
auth, no work: what is left of a request's time is BentoML and HTTP on this machine.
"""

from __future__ import annotations

from typing import Any

import bentoml


@bentoml.service(name="echo", traffic={"timeout": 60})
class EchoService:
    """Echo the customers back."""

    @bentoml.api(route="/predict")
    def predict(self, customers: list[dict[str, Any]]) -> dict[str, Any]:
        """Return the request's customers unchanged."""
        return {"results": customers}
