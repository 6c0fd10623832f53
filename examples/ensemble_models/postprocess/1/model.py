"""Classifier logits -> the top-k classes as strings, written against Triton's Python backend API.

LOGITS is float32 [batch, classes]. LABELS is BYTES [batch, k] (k from the config's output dims),
most likely first, each "<probability>:<index>:<label>" - the layout of Triton's classification
extension, with softmax probabilities instead of raw scores. Labels are read from labels.txt in
the model's folder, one per line, line i naming class i.
"""

import json
import os

import numpy as np

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.top_k = int(pb_utils.get_output_config_by_name(config, "LABELS")["dims"][-1])
        path = os.path.join(args["model_repository"], "labels.txt")
        with open(path, encoding="utf-8") as f:
            self.labels = f.read().splitlines()

    def execute(self, requests):
        responses = []
        for request in requests:
            logits = pb_utils.get_input_tensor_by_name(request, "LOGITS").as_numpy()
            shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
            probs = shifted / shifted.sum(axis=1, keepdims=True)
            top = np.argsort(-logits, axis=1, kind="stable")[:, : self.top_k]
            rows = [[self._entry(p[i], i) for i in indices] for p, indices in zip(probs, top, strict=True)]
            labels = np.array(rows, dtype=np.object_)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("LABELS", labels)]))
        return responses

    def _entry(self, probability, index):
        label = self.labels[index] if index < len(self.labels) else ""
        return f"{probability:.6f}:{index}:{label}".encode()
