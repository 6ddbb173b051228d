"""The pipeline's stages as typed functions over messages; no transport code in here."""
