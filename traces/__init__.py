"""traces: the versioned trace schema shared by collect, sim and analysis."""

from messplus.common import UserError
from messplus.traces.dense import BenchArrays, to_arrays
from messplus.traces.io import Trace, load_benches, read_trace, write_trace
from messplus.traces.schema import SCHEMA_VERSION
from messplus.traces.zoo import ModelSpec, Zoo, load_zoo

__all__ = [
    "SCHEMA_VERSION",
    "BenchArrays",
    "ModelSpec",
    "Trace",
    "UserError",
    "Zoo",
    "load_benches",
    "load_zoo",
    "read_trace",
    "to_arrays",
    "write_trace",
]
