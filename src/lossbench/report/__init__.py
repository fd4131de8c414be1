"""Reading runs back: the sweep summary, pairs and their statistics, verdicts, the report."""
