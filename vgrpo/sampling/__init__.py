"""Deterministic rectified-flow ODE samplers (Euler, Heun, DPM-Solver++ 2M) with time shift and CFG."""

from vgrpo.sampling.ode import SOLVERS, guided, nfe, sample, time_grid

__all__ = ["SOLVERS", "guided", "nfe", "sample", "time_grid"]
