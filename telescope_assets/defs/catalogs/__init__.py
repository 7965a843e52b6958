"""Source catalogs and frame quality."""
