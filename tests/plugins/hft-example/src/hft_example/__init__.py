"""A plugin used by hft's discovery tests."""
