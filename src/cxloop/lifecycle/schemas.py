"""API shapes that put lifecycle stages beside the customer profile."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import Connection

from cxloop.customers.schemas import CustomerDetail
from cxloop.lifecycle.service import customer_stages


class CustomerStage(BaseModel):
    model: str
    model_name: str
    stage: str | None = Field(description="The current stage; null outside the lifecycle")
    stage_name: str | None
    entered_at: datetime | None
    cycle: int = Field(description="1 for the first pass, 2+ after each return")
    history: list[dict[str, Any]]


class CustomerWithStages(CustomerDetail):
    stages: list[CustomerStage] = Field(
        default_factory=list, description="Current stage and stage history in every model"
    )


def with_stages(conn: Connection, detail: CustomerDetail) -> CustomerWithStages:
    stages = [CustomerStage(**s) for s in customer_stages(conn, detail.id)]
    return CustomerWithStages(**detail.model_dump(), stages=stages)
