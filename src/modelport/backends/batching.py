"""Handing one batched execution's outputs back to the requests that made up the batch."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from modelport.backends.base import ExecuteResult
from modelport.tensor.records import InferRequest


def split_outputs(requests: Sequence[InferRequest], outputs: dict[str, np.ndarray]) -> ExecuteResult:
    """Each request's rows of the batched `outputs`, as views, in request order.

    A lone request gets the outputs as they are (a model without batching has no batch dimension).
    """
    if len(requests) == 1:
        return [outputs]
    results: ExecuteResult = []
    start = 0
    for request in requests:
        end = start + request.batch_size
        results.append({name: array[start:end] for name, array in outputs.items()})
        start = end
    return results
