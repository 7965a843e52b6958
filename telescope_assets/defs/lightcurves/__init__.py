"""Light curves, variability, anomalies and the nightly report."""
