"""Jobs that turn experts into curated datasets: rollout, validate, filter, tokenize, write."""
