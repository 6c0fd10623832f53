#!/usr/bin/env python3
"""Writes a ResNet-18-shaped classifier (random weights, FP32 [3,224,224] -> [1000]) into a model
repository, as the ResNet-class model of the benchmarks; no download needed. Needs torch.

  python benchmarks/build_resnet.py --output /tmp/bench_repo [--max-batch-size 8]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch import nn

_CONFIG = """name: "resnet18"
platform: "onnxruntime_onnx"
max_batch_size: {max_batch}
input [ {{ name: "input" data_type: TYPE_FP32 dims: [ 3, 224, 224 ] }} ]
output [ {{ name: "logits" data_type: TYPE_FP32 dims: [ 1000 ] }} ]
dynamic_batching {{ }}
instance_group [ {{ count: 1 kind: KIND_CPU }} ]
"""


class _Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
            if stride != 1 or cin != cout
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + self.down(x))


def resnet18() -> nn.Module:
    stem = [nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(3, 2, 1)]
    layers: list[nn.Module] = list(stem)
    cin = 64
    for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        layers += [_Block(cin, cout, stride), _Block(cout, cout, 1)]
        cin = cout
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, 1000)]
    return nn.Sequential(*layers).eval()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--output", required=True, type=Path, help="model repository to write resnet18 into")
    ap.add_argument("--max-batch-size", type=int, default=8)
    args = ap.parse_args()
    folder = args.output / "resnet18"
    (folder / "1").mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    torch.onnx.export(
        resnet18(), (torch.randn(1, 3, 224, 224),), str(folder / "1" / "model.onnx"),
        input_names=["input"], output_names=["logits"], dynamic_axes={"input": {0: "b"}, "logits": {0: "b"}},
        opset_version=17, dynamo=False,
    )  # fmt: skip
    (folder / "config.pbtxt").write_text(_CONFIG.format(max_batch=args.max_batch_size))
    print(f"wrote {folder}")


if __name__ == "__main__":
    main()
