"""hft-template: a copy-me hft plugin with one risk rule and one CLI command.

The host loads :mod:`hft_template.plugin` through the ``template`` entry point; nothing else here
is imported until a hook runs.
"""
