"""What every params section shares: the strict pydantic base and the error a bad params file raises."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class ParamsError(ValueError):
    """Bad params: the message names the YAML file and each dotted field path."""


class Strict(BaseModel):
    # allow_inf_nan=False: a float field given inf or nan (training.lr=inf) is refused, naming the field.
    model_config = ConfigDict(extra="forbid", validate_default=True, allow_inf_nan=False)
