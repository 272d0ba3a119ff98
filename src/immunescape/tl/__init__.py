"""Tools: scoring, aggregation and classification."""
