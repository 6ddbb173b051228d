"""Versioned Avro schemas, one subject per topic; see README.md in this directory."""
