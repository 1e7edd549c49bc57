"""traces: the versioned trace schema shared by collect, sim and analysis."""

from traces.dense import BenchArrays, to_arrays
from traces.errors import TraceError
from traces.io import Trace, load_benches, read_trace, write_trace
from traces.schema import SCHEMA_VERSION
from traces.zoo import ModelSpec, Zoo, load_zoo

__all__ = [
    "SCHEMA_VERSION",
    "BenchArrays",
    "ModelSpec",
    "Trace",
    "TraceError",
    "Zoo",
    "load_benches",
    "load_zoo",
    "read_trace",
    "to_arrays",
    "write_trace",
]
