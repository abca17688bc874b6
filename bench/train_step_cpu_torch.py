"""The torch peer of bench/train_step_cpu: times one ResNet18-CIFAR training step in torch.

Usage: train_step_cpu_torch.py [--steps N] [--warmup N] [--threads N] [--batch N] [--width W]
Prints "key value" lines: step_ms (median over the timed steps), min_ms, max_ms, forward_ms,
backward_ms, sgd_ms (medians of the parts), all in ms; threads; version_major, version_minor.

The model is SuperGradients' ResNet18-CIFAR as the engine builds it (3x3 stem conv, no
max-pool, BasicBlocks [2, 2, 2, 2] with a 1x1 conv + BN shortcut where the stride or width
changes, global average pool, linear); the step is zero_grad, forward in train mode,
cross-entropy, backward, SGD(momentum 0.9, weight_decay 5e-4).
"""
import argparse
import statistics
import time

import torch
from torch import nn
import torch.nn.functional as F


class BasicBlock(nn.Module):
    def __init__(self, in_planes, planes, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet18Cifar(nn.Module):
    def __init__(self, num_classes=10, width=1.0):
        super().__init__()
        planes = [int(base * width) for base in (64, 128, 256, 512)]
        self.conv1 = nn.Conv2d(3, planes[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes[0])
        layers, in_planes = [], planes[0]
        for i, p in enumerate(planes):
            stride = 1 if i == 0 else 2
            layers.append(nn.Sequential(BasicBlock(in_planes, p, stride), BasicBlock(p, p, 1)))
            in_planes = p
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(planes[3], num_classes)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return self.linear(torch.flatten(self.avgpool(out), 1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--width", type=float, default=1.0)
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = ResNet18Cifar(10, a.width)
    model.train()
    criterion = nn.CrossEntropyLoss()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    x = torch.rand(a.batch, 3, 32, 32) * 2 - 1
    y = torch.randint(0, 10, (a.batch,))

    step, fwd, bwd, sgd = [], [], [], []
    for i in range(a.warmup + a.steps):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=False)  # the engine zeroes its gradients too
        loss = criterion(model(x), y)
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        opt.step()
        t3 = time.perf_counter()
        if i < a.warmup:
            continue
        step.append(t3 - t0)
        fwd.append(t1 - t0)
        bwd.append(t2 - t1)
        sgd.append(t3 - t2)

    def ms(v):
        return v * 1e3

    print("step_ms", ms(statistics.median(step)))
    print("min_ms", ms(min(step)))
    print("max_ms", ms(max(step)))
    print("forward_ms", ms(statistics.median(fwd)))
    print("backward_ms", ms(statistics.median(bwd)))
    print("sgd_ms", ms(statistics.median(sgd)))
    print("threads", torch.get_num_threads())
    major, minor = torch.__version__.split(".")[:2]
    print("version_major", int(major))
    print("version_minor", int(minor))


if __name__ == "__main__":
    main()
