"""Predict an unmeasured configuration from laws fitted on this host's records, and check the laws on held-out
configurations (``query``: the configuration; ``law``: one fitted law; ``predictor``: the stages together;
``holdout``: leave one configuration out)."""

from numa_ops.predict.holdout import HeldOut, every_machine, leave_one_out, summary
from numa_ops.predict.law import Law, OutsideRange
from numa_ops.predict.predictor import NoLaw, Prediction, Predictor, predict
from numa_ops.predict.query import Query

__all__ = ["HeldOut", "Law", "NoLaw", "OutsideRange", "Prediction", "Predictor", "Query", "every_machine",
           "leave_one_out", "predict", "summary"]
