"""The agent's tools: a safe calculator and search."""
