"""Transports behind one small interface: the in-process broker and Apache Kafka."""
