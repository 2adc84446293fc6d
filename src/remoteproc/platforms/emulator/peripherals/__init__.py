"""Peripheral models of the emulated machines, one module per model family.

``vsoc``: the device block of the bundled ``default`` machine (mailbox, console, timer, watchdog,
system control). A new model family gets a module here; a machine file names the model.
"""
