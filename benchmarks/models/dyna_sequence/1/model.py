"""OUTPUT = READY * (INPUT + START + END * CORRID): the Python twin of Triton's simple_dyna_sequence."""

import numpy as np
import triton_python_backend_utils as pb_utils


def _value(request, name):
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    return None if tensor is None else tensor.as_numpy()


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            value = _value(request, "INPUT").astype(np.int64)
            ready = _value(request, "READY").astype(np.int64)
            total = value + _value(request, "START")
            end, corrid = _value(request, "END"), _value(request, "CORRID")
            if end is not None and corrid is not None:
                total = total + end * corrid.astype(np.int64)
            out = (ready * total).astype(np.int32)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUTPUT", out)]))
        return responses
