"""Training sets, the three models, and their retraining schedule."""
