"""biasvar: measure the bias and variance of gradient estimators for discrete random variables."""

__version__ = "0.1.0"
