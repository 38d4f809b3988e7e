"""The same KD training step in PyTorch, for `benchmarks/vs_pytorch.py` (which starts this file as a
worker and interleaves its steps with the TensorFlow ones). Needs `pip install torch==2.13.0`.

    python benchmarks/torch_kd_step.py --pair=resnet32x4,resnet8x4 --batches=batches.npz --repetitions=5

The CIFAR ResNets are written here from the same description as `tfadakd/models/resnet.py`
(conv3x3-BN-ReLU-conv3x3-BN basic blocks, 1x1 projection shortcuts, widths (32, 64, 128, 256) for the
x4 models); their parameter counts are checked against the Keras models' before anything is timed.
The step: teacher forward without gradients, student forward, 0.1 CE + 0.9 T^2 KL(T=4) on raw logits,
backward, SGD (momentum 0.9, weight decay 5e-4).

Worker protocol (`--serve`): each line `<variant> <batch index>` on stdin runs one step and answers with
its time in milliseconds on stdout; `quit` ends. Variants: `float32`, `float32_cl` (channels-last),
`bf16_cl` (bfloat16 autocast + channels-last).
"""

import argparse
import statistics
import sys
import time

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

VARIANTS = {"float32": (False, False), "float32_cl": (False, True), "bf16_cl": (True, True)}
WIDTHS = {"resnet8": (8, (16, 16, 32, 64)), "resnet20": (20, (16, 16, 32, 64)), "resnet32": (32, (16, 16, 32, 64)),
          "resnet8x4": (8, (32, 64, 128, 256)), "resnet32x4": (32, (32, 64, 128, 256))}


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.project = None
        if stride != 1 or cin != cout:
            self.project = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(y + (x if self.project is None else self.project(x)))


class CifarResNet(nn.Module):
    def __init__(self, depth, widths, num_classes=100):
        super().__init__()
        n = (depth - 2) // 6
        self.stem = nn.Sequential(nn.Conv2d(3, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU())
        blocks, cin = [], widths[0]
        for stage, cout in enumerate(widths[1:]):
            for b in range(n):
                blocks.append(Block(cin, cout, 2 if stage > 0 and b == 0 else 1))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(cin, num_classes)

    def forward(self, x):
        return self.head(torch.flatten(F.adaptive_avg_pool2d(self.blocks(self.stem(x)), 1), 1))


def build(name):
    if name not in WIDTHS:
        raise SystemExit(f"--pair: {name!r} is not one of {', '.join(WIDTHS)}")
    return CifarResNet(*WIDTHS[name])


def parameter_count(model):
    return sum(p.numel() for p in model.parameters())


class KDStep:
    """One variant: its own student, optimizer and teacher copy in the variant's memory format."""

    def __init__(self, teacher_name, student_name, bf16, channels_last, temperature=4.0):
        torch.manual_seed(0)
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        self.teacher = build(teacher_name).to(memory_format=fmt).eval()
        self.student = build(student_name).to(memory_format=fmt).train()
        self.optimizer = torch.optim.SGD(self.student.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
        self.bf16, self.fmt, self.t = bf16, fmt, temperature

    def __call__(self, x, y):
        x = x.contiguous(memory_format=self.fmt)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            with torch.no_grad():
                teacher_logits = self.teacher(x)
            student_logits = self.student(x)
        teacher_logits, student_logits = teacher_logits.float(), student_logits.float()
        kd = F.kl_div(F.log_softmax(student_logits / self.t, 1), F.log_softmax(teacher_logits / self.t, 1),
                      reduction="batchmean", log_target=True) * self.t ** 2
        loss = 0.1 * F.cross_entropy(student_logits, y) + 0.9 * kd
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss.item()


def load_batches(path):
    data = np.load(path)
    images = torch.from_numpy(np.ascontiguousarray(data["images"].transpose(0, 1, 4, 2, 3)))  # NHWC -> NCHW
    return [(images[i], torch.from_numpy(data["labels"][i]).long()) for i in range(len(images))]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pair", default="resnet32x4,resnet8x4")
    parser.add_argument("--batches", required=True, help=".npz with images [n, batch, 32, 32, 3] and labels [n, batch]")
    parser.add_argument("--variants", default="float32,float32_cl,bf16_cl")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--serve", action="store_true", help="answer step requests on stdin (see above)")
    parser.add_argument("--repetitions", type=int, default=5)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    teacher, student = args.pair.split(",")
    batches = load_batches(args.batches)
    steps = {}
    for v in args.variants.split(","):
        if v not in VARIANTS:
            raise SystemExit(f"--variants: {v!r} is not one of {', '.join(VARIANTS)}")
        steps[v] = KDStep(teacher, student, *VARIANTS[v])
    counts = {name: parameter_count(build(name)) for name in (teacher, student)}
    if args.serve:
        print("ready " + " ".join(f"{k}={v}" for k, v in counts.items()), flush=True)
        for line in sys.stdin:
            if line.strip() == "quit":
                break
            variant, index = line.split()
            x, y = batches[int(index) % len(batches)]
            start = time.perf_counter()
            steps[variant](x, y)
            print(f"{1000 * (time.perf_counter() - start):.3f}", flush=True)
        return
    print(f"parameters: {counts}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    for name, step in steps.items():
        times = []
        for i in range(args.repetitions + 2):
            start = time.perf_counter()
            step(*batches[i % len(batches)])
            times.append(1000 * (time.perf_counter() - start))
        print(f"{name}: median {statistics.median(times[2:]):.1f} ms")


if __name__ == "__main__":
    main()
