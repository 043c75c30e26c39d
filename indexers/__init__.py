"""The LanceDB store, ANN build, exact/FAISS bulk search, query and select (see docs/architecture.md)."""

import os

# Lance logs k-means chatter (empty clusters on small tables) at WARN; keep stderr for our own messages.
os.environ.setdefault("LANCE_LOG", "error")
os.environ.setdefault("LANCEDB_LOG", "error")
