"""Face models behind small interfaces: detector, landmarker, embedder, and the glue between them."""
