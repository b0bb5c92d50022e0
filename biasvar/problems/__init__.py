"""Problems: models at a snapshot whose gradients are measured (toy-cat, vae, hvae, quant-unit, qnet)."""

from biasvar.problems.base import Problem, draw_loss, noise_requests, plain_loss
from biasvar.problems.toy import ToyCat

__all__ = ["Problem", "ToyCat", "draw_loss", "noise_requests", "plain_loss"]
