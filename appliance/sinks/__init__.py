"""Where events go: the JSONL/text output, the agent's dashboard, the archive and its
stores."""
