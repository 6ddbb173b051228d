"""The watchlist gallery: Milvus storage and enrollment from photos."""
