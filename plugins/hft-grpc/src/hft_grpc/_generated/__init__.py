"""Code generated from proto/hft/v1 by tools/generate_proto.py: do not edit."""
