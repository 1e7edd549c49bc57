"""collect: run every zoo model once per benchmark sample and record correctness, tokens, latency and energy."""
