"""Training: one loop (`Trainer`), its configuration and the losses."""

from adasr.train.config import Phase as Phase
from adasr.train.config import TrainConfig as TrainConfig
from adasr.train.loop import Trainer as Trainer
from adasr.train.loop import TrainingInterrupted as TrainingInterrupted

__all__ = ["Phase", "TrainConfig", "Trainer", "TrainingInterrupted"]
