"""Fitting the baseline to observed infant mortality: rate model, observations, structure, fit report, back-test."""
