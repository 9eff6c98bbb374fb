"""``appliance doctor``: check the box (config, audio wiring and levels, speech and VAD
models, dashboard port, state directory, memory, service) and say how to fix what is wrong.

Every check returns a frozen :class:`~appliance.doctor.check.Check` and never raises.
"""

from appliance.doctor.check import Check
from appliance.doctor.run import DoctorOptions, run_checks

__all__ = ["Check", "DoctorOptions", "run_checks"]
