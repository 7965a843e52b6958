"""The new_frames sensor: the incoming drop zone into the lake."""
