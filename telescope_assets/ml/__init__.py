"""Networks, Lightning modules and data modules for the network's learned models."""
