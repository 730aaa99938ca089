"""Rectified-flow samplers (ODE: Euler, Heun, DPM-Solver++ 2M; SDE), the rollouts, and the one
classifier-free guidance every model and both rollouts use (`vgrpo.sampling.guidance`)."""

from vgrpo.sampling.guidance import guided_velocity
from vgrpo.sampling.ode import SOLVERS, nfe, sample, time_grid

__all__ = ["SOLVERS", "guided_velocity", "nfe", "sample", "time_grid"]
