"""The sync engine. ``plan`` decides (pure), ``run`` reads and writes."""
