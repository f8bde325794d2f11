"""hft-sim: the simulation broker of hft, paper trading on a simulated exchange.

The host loads :mod:`hft_sim.plugin` through the ``sim`` entry point. The broker is
:class:`hft_sim.broker.SimBroker`; its settings are :class:`hft_sim.config.SimConfig`.
"""
