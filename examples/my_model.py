"""A tiny binary-latent VAE on MNIST, written as an ordinary nn.Module (measured by biasvar via
``--problem examples.my_model:make``; nothing in the biasvar package knows about it)."""

import math

import torch
import torch.nn.functional as F
from torch import nn

import biasvar


class BinaryVAE(nn.Module):
    def __init__(self, bits: int, hidden: int):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(784, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, bits))
        self.decoder = nn.Sequential(nn.Linear(bits, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, 784))

    def forward(self, x, sample):  # -> negative ELBO per image [B]
        logits = self.encoder(x).unsqueeze(-1)  # [B, bits, 1]: Bernoulli sites
        b = sample("z", logits).squeeze(-1)  # [B, bits] in {0, 1}; the only random draw
        px = self.decoder(b)  # Bernoulli logits of the pixels
        nll = (F.softplus(px) - x * px).sum(-1)
        q, lq, l1q = torch.sigmoid(logits), F.logsigmoid(logits), F.logsigmoid(-logits)
        kl = (q * lq + (1 - q) * l1q).sum((-1, -2)) + logits.shape[1] * math.log(2)  # vs uniform prior
        return nll + kl


def make(bits: int = 8, hidden: int = 32, seed: int = 0) -> biasvar.Problem:
    """The factory: ``biasvar train --problem examples.my_model:make -o bits=8 --data mnist-b``."""
    torch.manual_seed(seed)  # the default nn.Linear init, reproducible
    return biasvar.problem_from_module(BinaryVAE(bits, hidden), batch=torch.zeros(100, 784))
