"""Runs model.onnx (beside this file) with onnxruntime: the batch's requests are stacked into one run."""

import os

import numpy as np
import onnxruntime as ort

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        # Both servers pass the model's folder as "model_repository".
        path = os.path.join(args["model_repository"], args["model_version"], "model.onnx")
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])

    def execute(self, requests):
        inputs = [pb_utils.get_input_tensor_by_name(request, "INPUT").as_numpy() for request in requests]
        batch = inputs[0] if len(inputs) == 1 else np.concatenate(inputs)
        (output,) = self.session.run(["OUTPUT"], {"INPUT": batch})
        responses, start = [], 0
        for array in inputs:
            end = start + array.shape[0]
            responses.append(
                pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("OUTPUT", output[start:end])])
            )
            start = end
        return responses
