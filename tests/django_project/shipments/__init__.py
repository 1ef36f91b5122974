"""An app whose handlers record every event they see in a model."""
