"""Predictors: turn validated inputs into predictions through a learner."""
