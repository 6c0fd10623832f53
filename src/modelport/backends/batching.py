"""One batched execution's tensors: each input gathered across the requests, outputs split back."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from modelport.backends.base import ExecuteResult
from modelport.errors import InternalError
from modelport.tensor.records import InferRequest


def gather_inputs(requests: Sequence[InferRequest]) -> dict[str, np.ndarray]:
    """Each input of the batch, the requests' arrays concatenated once along the batch dimension.

    A lone request's arrays are passed as they are (no copy). Inputs are named as in the first
    request; the requests of one batch carry the same inputs.
    """
    if len(requests) == 1:
        return {i.name: i.data for i in requests[0].inputs}
    by_request = [{i.name: i.data for i in r.inputs} for r in requests]
    return {i.name: np.concatenate([inputs[i.name] for inputs in by_request]) for i in requests[0].inputs}


def split_outputs(
    model: str, requests: Sequence[InferRequest], outputs: dict[str, np.ndarray]
) -> ExecuteResult:
    """Each request's rows of the batched `outputs`, as views, in request order.

    A lone request gets the outputs as they are (a model without batching has no batch dimension).
    For several requests, every output's first dimension must be the batch's total rows; an output
    that is not batch-major cannot be split, and the batch's requests fail with INTERNAL.
    """
    if len(requests) == 1:
        return [outputs]
    rows = sum(r.batch_size for r in requests)
    for name, array in outputs.items():
        if array.ndim == 0 or array.shape[0] != rows:
            return [InternalError(_not_batch_major(model, name, array, rows))] * len(requests)
    results: ExecuteResult = []
    start = 0
    for request in requests:
        end = start + request.batch_size
        results.append({name: array[start:end] for name, array in outputs.items()})
        start = end
    return results


def _not_batch_major(model: str, name: str, array: np.ndarray, rows: int) -> str:
    if array.ndim == 0:
        return f"model '{model}': output '{name}' has no first dimension, the batch has {rows} rows"
    return (
        f"model '{model}': output '{name}' has {array.shape[0]} rows in its first dimension, "
        f"the batch has {rows}"
    )
