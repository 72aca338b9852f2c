"""Scheduling: off-peak windows now; prices, predictions and capacity planning build on them."""
