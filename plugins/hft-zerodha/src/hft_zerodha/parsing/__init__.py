"""Pure translations between Kite's wire formats and hft's model: no I/O, no state."""
