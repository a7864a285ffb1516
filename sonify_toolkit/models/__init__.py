"""Model adapters, one per role (CLAP, VLM, AST), each loaded lazily by Hub id or local path."""
