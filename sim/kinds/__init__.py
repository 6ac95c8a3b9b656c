"""Broker kinds: each module holds a kind's scenario spec (``Spec``, a pydantic model tagged by
``kind``) and its builder (``build(spec, context) -> broker``). Adding a kind is adding a module
here and naming it in ``KINDS``."""

from __future__ import annotations

from typing import Annotated, Union

from pydantic import Field

from . import fifo, rabbitmq, redis, sqs

KINDS = {"fifo": fifo, "redis": redis, "sqs": sqs, "rabbitmq": rabbitmq}

BrokerSpec = Annotated[Union[tuple(kind.Spec for kind in KINDS.values())], Field(discriminator="kind")]
