"""The canonical PyTorch MNIST recipe (pytorch/examples mnist/main.py), timed the way poolbench times itself.

torchvision MNIST through a DataLoader with per-sample ToTensor + Normalize((0.1307,), (0.3081,)),
batch 64 shuffled (test batch 1000); conv 1->32 3x3, conv 32->64 3x3, max-pool 2, dropout 0.25,
FC 9216->128, dropout 0.5, FC 128->10; Adadelta lr 1.0, StepLR(step_size=1, gamma=0.7); seed 1;
test accuracy after every epoch. Seconds are cumulative training time (test passes excluded),
the same definition as poolbench's history[].seconds, so time-to-accuracy compares like with like.

    python benchmarks/canonical_mnist.py --root ~/.cache/poolbench/data --epochs 5 --target 0.99

Prints one JSON line per epoch and stops at the first epoch that reaches --target.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.lr_scheduler import StepLR
from torchvision import datasets, transforms


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(9216, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        x = F.max_pool2d(x, 2)
        x = self.dropout1(x)
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = self.dropout2(x)
        return F.log_softmax(self.fc2(x), dim=1)


def train_epoch(model, loader, optimizer, max_batches: int | None) -> None:
    model.train()
    for batch, (data, target) in enumerate(loader):
        if max_batches is not None and batch >= max_batches:
            break
        optimizer.zero_grad()
        loss = F.nll_loss(model(data), target)
        loss.backward()
        optimizer.step()


def test_accuracy(model, loader) -> float:
    model.eval()
    correct = total = 0
    with torch.no_grad():
        for data, target in loader:
            correct += (model(data).argmax(1) == target).sum().item()
            total += target.numel()
    return correct / total


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=str(Path("~/.cache/poolbench/data").expanduser()),
                        help="folder holding MNIST/raw/ (poolbench's data.root)")
    parser.add_argument("--epochs", type=int, default=4, help="at most this many epochs")
    parser.add_argument("--target", type=float, default=0.99, help="stop at the first epoch reaching it")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    parser.add_argument("--max-batches", type=int, default=None, help="debugging: cut every epoch short")
    args = parser.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(1)
    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])
    train_set = datasets.MNIST(args.root, train=True, download=False, transform=transform)
    test_set = datasets.MNIST(args.root, train=False, download=False, transform=transform)
    train_loader = torch.utils.data.DataLoader(train_set, batch_size=64, shuffle=True)
    test_loader = torch.utils.data.DataLoader(test_set, batch_size=1000)

    model = Net()
    optimizer = torch.optim.Adadelta(model.parameters(), lr=1.0)
    scheduler = StepLR(optimizer, step_size=1, gamma=0.7)
    seconds = 0.0
    for epoch in range(1, args.epochs + 1):
        started = time.perf_counter()
        train_epoch(model, train_loader, optimizer, args.max_batches)
        seconds += time.perf_counter() - started
        accuracy = test_accuracy(model, test_loader)
        scheduler.step()
        print(json.dumps({"epoch": epoch, "test_accuracy": accuracy, "seconds": round(seconds, 3),
                          "threads": torch.get_num_threads()}), flush=True)
        if accuracy >= args.target:
            break


if __name__ == "__main__":
    main()
