"""Only an entry point: the plugin itself is hft.testing._plugin."""
