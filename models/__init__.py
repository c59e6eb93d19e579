"""The seed's XOR multi-layer perceptrons and how they train.

Three variants, each faithful to one script of the seed document (boostcourse Lab 08-2):
``backprop`` (2-2-1, hand-written backward pass), ``nn`` (2-2-1 ``nn.Sequential``) and
``wide_deep`` (2-10-10-10-1). ``train`` runs one job; it is the only entry point the worker uses.
"""

from xorjobs.defaults import VARIANTS
from xorjobs.models.result import TrainResult
from xorjobs.models.train import train

__all__ = ["VARIANTS", "TrainResult", "train"]
