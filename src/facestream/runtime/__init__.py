"""What every service shares at run time: the processing loop, metrics, health, shutdown."""
