"""References, transient candidates, alerts, the alert sensor and follow-up requests."""
