"""A faithful in-memory Unipile v1 simulator (SIMULATED) for tests and the local demo."""
from cookiesync.simulator.app import SimulatorConfig, create_simulator_app, run_simulator, simulator_mount

__all__ = ["SimulatorConfig", "create_simulator_app", "run_simulator", "simulator_mount"]
