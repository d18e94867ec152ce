"""A faithful in-memory Unipile v1 simulator (SIMULATED) for tests and the local demo.

`simulator.app` builds it (`create_simulator_app`, `simulator_mount`, `run_simulator`); the
other modules are the sections of the contract it follows (see `app`'s docstring). This file
imports none of them, so that importing one module of the package loads only what it needs.
"""
