"""A simulated network of robotic telescopes observing one shared sky, with truth tables."""
