"""Operating waguard from a terminal: the preflight (`waguard doctor`) and incidents (`waguard incident`)."""
